"""Recipe values derived from the training data: the `auto` keys and sizes given in milliseconds.

A general recipe cannot fix what depends on the data (a sample rate, how long a clip is, how many
tokens a text has, how many epochs a set of this size needs), so such keys accept `auto`, and the
STFT sizes accept a time ("32ms"). `resolve_auto` turns them into numbers when a run starts,
from the training split only, and says what it chose and why; the run's recipe.yaml and model
file keep the numbers, so prediction never depends on the data again.

    audio   features.sample_rate    most common rate of the training files, at most 22.05 kHz
            features.frame_seconds  95th percentile of the training clips' durations, rounded up
                                    to 0.25 s, within [0.25 s, 5 s] (longer clips are framed)
            features.hop_seconds    half the frame
            n_fft / win_length / hop_length in ms: samples at the resolved rate (n_fft rounded up
                                    to a power of two)
    text    tokenizer.max_len       99th percentile of the training texts' token counts, rounded
                                    up to a multiple of 8, within [8, 512]
    train   epochs                  about 2000 optimizer steps or 1000 passes over the median
                                    class's examples, whichever is more, within [10, 60] epochs
                                    (a small audio set: up to 72,000 s of windows read a run, at
                                    most 200 epochs); a fine-tuned pretrained encoder: 700 steps
                                    or 400 passes, [3, 200]
            patience                a third of the epochs, at least 5
            monitor                 val_macro_f1 when the training classes are imbalanced (the
                                    largest 3x the smallest or more); else val_loss below 200
                                    validation examples (or multi-label), else val_accuracy
            class_weights           balanced when the training classes are imbalanced, else none
                                    (multi-label: none)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from attn.errors import ConfigError, InputError
from attn.features.config import TextFeatures
from attn.schema import millis

from ..recipe import keys
from ..recipe.config import Recipe
from .prepared import PreparedData

MAX_AUTO_RATE = 22050  # Hz: above it, most classification cues are present at a fraction of the cost
FRAME_RANGE = (0.25, 5.0)  # seconds
FRAME_STEP = 0.25
MAX_LEN_RANGE = (8, 512)
TARGET_STEPS = 2000
# ... and many small classes want more passes than the steps give (docs/experiments.md, "Many small
# classes"): text.yaml on TREC's 50 fine labels (median class 40 questions, 154 steps an epoch),
# validation accuracy with the blend, mean of seeds 0-2, after 13 / 20 / 25 / 40 epochs: 79.2 /
# 79.9 / 80.2 / 80.0 (the network alone 73.6 -> 78.5). The fine-tuned encoder's constant is below.
CLASS_PASSES = 1000
EPOCH_RANGE = (10, 60)
# The 60-epoch cap bounds wall time: ~2000 steps would be hundreds of epochs on a small set, and
# ESC-10's 240 five-second clips train 60 epochs in ~15 min on 2 cores (120 epochs: 20-25 min,
# and no better on test; stop 29). A smaller audio set gets the epochs that cost about the same,
# up to PASS_SECONDS of windows read a run (60 epochs of ESC-10), at most MAX_EPOCHS
# (docs/experiments.md, "Epochs on small sets"). FSDD with 8 and 24 clips a digit (0.75 s
# windows, 60 -> 200 epochs), mean of seeds 0-2: validation 70.8 -> 77.9 and 92.5 -> 94.6,
# test 88.8 -> 92.6 and 95.0 -> 97.1; ESC-10 with 8 clips a class (60 -> 180): validation 91.2 ->
# 92.1, test 83.8 -> 82.9. Text keeps 60: 120 TREC questions trained from scratch stopped early
# near epoch 70 of 120 (best ~31) with the same validation accuracy as at 60.
PASS_SECONDS = 72_000
MAX_EPOCHS = 200
# Fine-tuning a pretrained encoder (docs/experiments.md, "How long to fine-tune"): SST-2's 6.9k
# texts want 3 epochs (~650 steps); 192 TREC questions (6 steps an epoch) were at 58% validation
# after 3 epochs and 86% after 10: small sets need the steps, not the epochs.
FINETUNE_STEPS = 700
# ... and many small classes want more passes than the steps give. TREC's 50 fine labels (median
# class 40 questions, 154 steps an epoch), mean validation accuracy of seeds 0-1 after 3 / 5 / 10 /
# 13 / 20 epochs (120 / 200 / 400 / 520 / 800 passes over the median class): 87.0 / 89.1 / 89.9 /
# 90.0 / 89.4.
# So the epochs also give the median class ~400 passes over its examples, which changes no set
# with a few large classes (SST-2, TREC, GoEmotions: median 295 positives).
FINETUNE_CLASS_PASSES = 400
FINETUNE_EPOCH_RANGE = (3, 200)
SMALL_VAL = 200  # validation examples below which accuracy is too coarse to pick an epoch
# Single-label training classes this unequal (the largest over the smallest) are imbalanced:
# `monitor: auto` picks the saved epoch by validation macro-F1 and `class_weights: auto` is
# balanced (loss and baseline). Accuracy and log-loss reward naming the majority: on SST-2 cut to
# 90/10 the defaults saved a model naming "positive" for every text. Held-out macro-F1, means of
# seeds 0-2 (docs/experiments.md, "Imbalanced classes"), before -> both: SST-2 90/10 .474 -> .568,
# TREC coarse from 1500 questions (13x) .775 -> .847, FSDD with 60 / 6 clips a digit .863 -> .912;
# SST-2 at 80/20 (4x) .729 -> .732. Balanced sets keep the rules below.
IMBALANCE = 3.0
PROBE_FILES = 1000  # audio headers read to learn rates and durations (evenly spaced items)
SYNTHETIC_RATE = 16000


def needs_resolving(recipe: Recipe) -> bool:
    f, t = recipe.features, recipe.train
    text = isinstance(f, TextFeatures)
    return (
        (text and f.tokenizer.max_len == "auto")
        or (f.encoder is not None and f.encoder.config is None)
        or (not text and not f.resolved)
        or "auto" in (t.epochs, t.patience, t.monitor, t.windows, t.class_weights)
    )


def resolve_auto(recipe: Recipe, prepared: PreparedData) -> tuple[Recipe, PreparedData, dict[str, Any]]:
    """(recipe with numbers for every auto/ms value, prepared data (text: with the fitted
    tokenizer, which max_len auto needed anyway), {dotted key: {"value", "why"}})."""
    if not needs_resolving(recipe):
        return recipe, prepared, {}
    values: dict[str, Any] = {}  # dotted key -> the number it became
    chosen: dict[str, dict[str, Any]] = {}

    def put(key: str, value: Any, why: str) -> None:
        values[key] = value
        chosen[key] = {"value": value, "why": why}

    durations = None  # audio: the probed training clips' durations (one probe per run)
    if recipe.features.encoder is not None and recipe.features.encoder.config is None:
        values["features.encoder.config"] = _encoder(recipe, put)
        recipe = keys.replaced(recipe, values)  # the steps below read the encoder's config and rate
    if isinstance(recipe.features, TextFeatures):
        if recipe.features.tokenizer.max_len == "auto":
            prepared = _max_len(recipe, prepared, put)
    elif not recipe.features.resolved:
        durations = _audio(recipe, prepared, put)
    _training(recipe, prepared, put, values, durations)
    resolved = keys.replaced(recipe, values)
    if any(k.startswith("features.") for k in values):
        # Validated once more, as a new recipe: the rules that wait for the numbers (mel filters that
        # fit n_fft, f_max below Nyquist, hop no longer than the frame, train.augment.freq_mask within
        # the bins, the tune space's bounds against these features) could not run when it loaded.
        # The train values need no check: each is chosen within its field's range.
        from ..recipe.load import recipe_to_dict, validate_recipe

        resolved = validate_recipe(recipe_to_dict(resolved), source="recipe (auto values resolved)")
    return resolved, prepared, chosen


def _encoder(recipe: Recipe, put) -> dict[str, Any]:
    """A pretrained encoder's checkpoint: its hash, and for audio its sampling rate (the only rate
    it was pretrained at); returns its config.json (the architecture, so the model file needs no
    checkpoint)."""
    from .encoders import resolve_encoder

    f = recipe.features
    ck = resolve_encoder(f.encoder)
    _check_modality(f.encoder.name, ck.config["model_type"], isinstance(f, TextFeatures))
    put("features.encoder.sha256", ck.sha256, f"model.safetensors of {ck.path} ({ck.source})")
    _check_finetune(f.encoder.name, f.encoder.finetune, ck.config, isinstance(f, TextFeatures))
    if isinstance(f, TextFeatures):
        return ck.config
    rate = ck.config["feature_extractor"]["sampling_rate"]
    if f.sample_rate == "auto":
        put("features.sample_rate", rate, "the encoder's sampling rate")
    elif f.sample_rate != rate:
        raise ConfigError(f"features.sample_rate ({f.sample_rate}) differs from the encoder's {rate} Hz: "
                          "use sample_rate: auto (or the encoder's rate)")  # fmt: skip
    return ck.config


def _check_modality(name: str, kind: str, text: bool) -> None:
    """A text recipe needs a text encoder and an audio recipe an audio one (they failed later, on
    a missing tokenizer or feature extractor)."""
    from attn.models.bert import ARCHITECTURES
    from attn.models.hf_audio import AUDIO_ARCHITECTURES

    audio = kind in AUDIO_ARCHITECTURES
    if audio == text:
        want = ARCHITECTURES if text else AUDIO_ARCHITECTURES
        have, need = ("an audio", "a text") if audio else ("a text", "an audio")
        raise ConfigError(f"encoder {name!r}: {have} encoder ({kind}), and {need} recipe needs {need} encoder "
                          f"({', '.join(want)})")  # fmt: skip


# -- audio --------------------------------------------------------------------------------------


def _audio(recipe: Recipe, prepared: PreparedData, put) -> list[float]:
    """Resolves the audio auto values; returns the probed training clips' durations."""
    f = recipe.features
    rate, durations, why_rate = _probe(recipe, prepared)
    if f.sample_rate == "auto":
        sr = min(rate, MAX_AUTO_RATE)
        put("features.sample_rate", sr, why_rate + (f", capped at {MAX_AUTO_RATE}" if rate > MAX_AUTO_RATE else ""))
    else:
        sr = f.sample_rate
    frame = f.frame_seconds
    if frame == "auto":
        p95 = float(np.percentile(durations, 95))
        frame = min(max(math.ceil(p95 / FRAME_STEP - 1e-9) * FRAME_STEP, FRAME_RANGE[0]), FRAME_RANGE[1])
        put("features.frame_seconds", frame, f"95% of {len(durations)} training clips last at most {p95:.2f}s")
    if f.hop_seconds == "auto":
        put("features.hop_seconds", frame / 2, "half the frame")
    for key in ("n_fft", "win_length", "hop_length"):
        value = getattr(f, key)
        if isinstance(value, str):
            samples = max(1, round(millis(value) * sr / 1000))
            if key == "n_fft":
                samples = 1 << (samples - 1).bit_length()
                why = f"{value} at {sr} Hz, rounded up to a power of two"
            else:
                why = f"{value} at {sr} Hz"
            put(f"features.{key}", samples, why)
    return durations


def _probe(recipe: Recipe, prepared: PreparedData) -> tuple[int, list[float], str]:
    """(most common sample rate, clip durations in seconds, a phrase saying so) of the training
    files; headers only, at most PROBE_FILES of them, evenly spaced."""
    data = recipe.data
    items = prepared.splits["train"]
    if data.synthetic is not None:
        rate = recipe.features.sample_rate if recipe.features.sample_rate != "auto" else SYNTHETIC_RATE
        return rate, [data.synthetic.seconds] * len(items), "generated data"
    from attn.features.audio import audio_info

    pick = np.unique(np.linspace(0, len(items) - 1, min(len(items), PROBE_FILES)).round().astype(int))
    rates: Counter[int] = Counter()
    durations = []
    first_error = None
    for i in pick:
        try:
            info = audio_info(items[i].source)
        except Exception as e:  # noqa: BLE001 - an unreadable file is reported when the data loads
            first_error = first_error or e
            continue
        rates[info.sample_rate] += 1
        durations.append(info.seconds)
    if not rates:  # nothing to train on either: the data's error (exit 1), naming a file and why
        raise InputError(f"data: none of the {len(pick)} training files probed for the auto features could be "
                         f"read (first: {first_error})")  # fmt: skip
    rate, n = rates.most_common(1)[0]
    share = f"{n} of {sum(rates.values())}" if len(rates) > 1 else "all"
    return rate, durations, f"{share} probed training files are {rate} Hz"


# -- text ---------------------------------------------------------------------------------------


def _max_len(recipe: Recipe, prepared: PreparedData, put) -> PreparedData:
    from .text import fit_tokenizer

    texts = [it.source for it in prepared.splits["train"]]
    tok = prepared.tokenizer or fit_tokenizer(recipe.features, texts)
    counts = np.array([tok.encode_cut(t, 1)[1] for t in texts])  # token counts; the words need no hashing
    p99 = float(np.percentile(counts, 99))
    n = min(max(8 * math.ceil(p99 / 8), MAX_LEN_RANGE[0]), MAX_LEN_RANGE[1])
    why = f"99% of {len(texts)} training texts have at most {p99:.0f} tokens (longest {counts.max()})"
    limit = _encoder_positions(recipe)
    if limit is not None and n > limit:
        n, why = limit, why + f"; the encoder has {limit} positions"
    put("features.tokenizer.max_len", n, why)
    return prepared.with_tokenizer(tok)


def _check_finetune(name: str, finetune: str | int, config: dict[str, Any], text: bool) -> None:
    """`finetune: N` counts depths from the top: the N top layers, and at N = layers + 1 the
    embeddings too. More than that is a recipe written for a deeper encoder (a 12-layer number
    on a 6-layer checkpoint): refused rather than quietly read as "all"."""
    if not isinstance(finetune, int):
        return
    from attn.models.bert import encoder_shape
    from attn.models.hf_audio import audio_encoder_shape

    layers = (encoder_shape if text else audio_encoder_shape)(config)["layers"]  # the checkpoint is checked already
    if finetune > layers + 1:
        raise ConfigError(f"features.encoder.finetune: {finetune}, but encoder {name!r} has {layers} layers: use "
                          f"1-{layers} (the top N layers train), {layers + 1} or all (the embeddings too), "
                          "or frozen")  # fmt: skip


def _encoder_positions(recipe: Recipe) -> int | None:
    """How many tokens the recipe's pretrained encoder can take, or None without one."""
    enc = recipe.features.encoder
    if enc is None:
        return None
    from attn.models.bert import encoder_shape

    from .encoders import resolve_encoder

    shape = encoder_shape(enc.config or resolve_encoder(enc).config)
    return shape["positions"] - shape["offset"]


# -- training -----------------------------------------------------------------------------------


def _windows_per_clip(recipe: Recipe, prepared: PreparedData, values: dict[str, Any],
                      durations: list[float] | None) -> tuple[float, float]:  # fmt: skip
    """(mean, median) windows per training clip at the (resolved) frame and hop: text has one
    per text."""
    if isinstance(recipe.features, TextFeatures):
        return 1.0, 1.0
    f = recipe.features  # frame and hop may have been auto a moment ago: their numbers are in `values`
    frame = float(values.get("features.frame_seconds", f.frame_seconds))
    hop = float(values.get("features.hop_seconds", f.hop_seconds))
    if durations is None:  # the recipe fixed every audio value: nothing probed the files yet
        _, durations, _ = _probe(recipe, prepared)
    counts = [1 + max(0, math.ceil((d - frame) / hop - 1e-9)) for d in durations]
    return (float(np.mean(counts)), float(np.median(counts))) if counts else (1.0, 1.0)


def _class_counts(prepared: PreparedData) -> Counter:
    """Each class's training examples (multi-label: its positives)."""
    train = prepared.splits["train"]
    return Counter(lab for it in train for lab in (it.labels if it.labels is not None else (it.label,)))


def _median_class(prepared: PreparedData) -> float:
    """The median over classes of their training examples (multi-label: of their positives)."""
    counts = _class_counts(prepared)
    return max(1.0, float(np.median([counts[lab] for lab in prepared.labels]))) if counts else 1.0


def _imbalance(prepared: PreparedData) -> str | None:
    """Why the single-label training classes count as imbalanced (the largest IMBALANCE times the
    smallest or more), or None."""
    counts = _class_counts(prepared)  # called for single-label data only
    if len(counts) < 2:
        return None
    ranked = counts.most_common()
    (big, n_big), (small, n_small) = ranked[0], ranked[-1]
    if n_big < IMBALANCE * n_small:
        return None
    return (f"the training classes are imbalanced ({big!r} has {n_big} examples, {small!r} {n_small}: "
            f"{n_big / n_small:.0f}x)")  # fmt: skip


def _training(recipe: Recipe, prepared: PreparedData, put, values: dict[str, Any],
              durations: list[float] | None = None) -> None:  # fmt: skip
    t = recipe.train
    n_train, n_val = len(prepared.splits["train"]), len(prepared.splits["val"])
    windows, per_clip, typical = t.windows, 1.0, 1.0
    if windows == "auto" or (windows == "all" and t.epochs == "auto"):
        per_clip, typical = _windows_per_clip(recipe, prepared, values, durations)
    if windows == "auto":
        # by the median clip: one 20-minute file among 240 one-second clips (a mean of 11 windows)
        # would otherwise have every epoch read its 2400 windows, 91% of them, all of one class
        windows = "all" if typical >= 2 else "random"
        put("train.windows", windows, f"the median training clip holds {typical:g} windows ({per_clip:.1f} on "
            "average)" + (": one random window per clip would see a fraction of each recording per epoch"
                          if windows == "all" else ""))  # fmt: skip
    examples = n_train * (per_clip if windows == "all" else 1)
    epochs = t.epochs
    if epochs == "auto":
        steps = max(1, math.ceil(examples / t.batch_size))
        encoder = recipe.features.encoder
        finetune = encoder is not None and not encoder.frozen  # a pretrained encoder's layers train
        target, passes, (low, high) = ((FINETUNE_STEPS, FINETUNE_CLASS_PASSES, FINETUNE_EPOCH_RANGE) if finetune
                                       else (TARGET_STEPS, CLASS_PASSES, EPOCH_RANGE))  # fmt: skip
        what = " (fine-tuning a pretrained encoder)" if finetune else ""
        want, classes = round(target / steps), ""
        # an epoch passes once over every class's examples (windows, when it reads every window)
        median = _median_class(prepared) * (per_clip if windows == "all" else 1)
        if math.ceil(passes / median) > want:
            want = math.ceil(passes / median)
            # windows: its examples times the mean windows per clip over all classes, an estimate
            unit = "windows" if windows == "all" else "examples"
            about = "about " if windows == "all" and per_clip != 1 else ""
            classes = f"; the median class has {about}{median:.0f} {unit}: ~{passes} passes over them"
        small = ""
        if not finetune and not isinstance(recipe.features, TextFeatures):
            # a small audio set: the epochs that cost what 60 epochs of ESC-10's 240 five-second clips do
            read = examples * float(values.get("features.frame_seconds", recipe.features.frame_seconds))  # s an epoch
            if PASS_SECONDS / max(1.0, read) > high:
                high = min(MAX_EPOCHS, math.ceil(PASS_SECONDS / max(1.0, read)))
                small = f" (a small set: up to ~{PASS_SECONDS:,} s of windows read)"
        epochs = min(max(want, low), high)
        bound = "" if epochs == want else f", kept within {low}-{high} epochs{small}"
        put(
            "train.epochs",
            epochs,
            f"{round(examples)} training {'windows' if windows == 'all' else 'examples'}, {steps} steps per epoch: "
            f"~{target} steps{classes}{what}{bound}",
        )
    if t.patience == "auto":
        put("train.patience", max(5, epochs // 3), "a third of the epochs" if epochs // 3 >= 5 else "at least 5")
    uneven = None if recipe.data.multi_label else _imbalance(prepared)
    if t.class_weights == "auto":
        if recipe.data.multi_label:
            put("train.class_weights", "none", "multi-label: each class's own sigmoid already sees its positives")
        elif uneven:
            put("train.class_weights", "balanced", uneven)
        else:
            put("train.class_weights", "none", "the training classes are about equal in size")
    if t.monitor == "auto":
        if uneven:
            put("train.monitor", "val_macro_f1", uneven + ": accuracy and the loss reward naming the larger ones")
        elif recipe.data.multi_label:
            put("train.monitor", "val_loss", "multi-label: exact-set accuracy is coarse, the BCE loss is smooth")
        elif n_val and n_val < SMALL_VAL:
            put("train.monitor", "val_loss", f"{n_val} validation examples: accuracy moves in {100 / n_val:.1f}-point "
                                             "steps, the loss is smoother")  # fmt: skip
        elif n_val:
            put("train.monitor", "val_accuracy", f"{n_val} validation examples")
        else:  # nothing to monitor: the trainer keeps the epoch of lowest training loss
            put("train.monitor", "val_accuracy", "no validation examples, so nothing to monitor: the saved epoch is "
                                                 "the one of lowest training loss")  # fmt: skip
