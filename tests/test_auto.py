"""`auto` recipe keys and sizes in milliseconds: resolved from the training split when a run
starts, reported, and stored as numbers in the run's recipe and model file."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

import attn
from attn.pipelines.data.auto import resolve_auto
from attn.pipelines.data.prepared import prepare_data
from attn.pipelines.recipe.load import load_recipe, recipe_from_dict
from helpers import tone, write_wav


def _audio_folder(tmp_path, rate=44100, seconds=(0.4, 0.6, 0.7, 0.9, 2.6)):
    """Two classes of tones at `rate`, clips of the given durations."""
    for label, freq in (("low", 220), ("high", 1760)):
        for i, s in enumerate(seconds * 4):
            write_wav(tmp_path / "audio" / label / f"{i}.wav", tone(freq, s, rate, seed=i), rate)
    return tmp_path / "audio"


def _cap(examples, seconds):
    """The most epochs `auto` gives a from-scratch audio model: 60, or on a small set the epochs
    of 72,000 s of windows (`seconds` each), at most 200."""
    return max(60, min(200, math.ceil(72_000 / (examples * seconds))))


def _audio_recipe(root, **features):
    return {
        "data": {"root": str(root), "val_fraction": 0.2, "test_fraction": 0.2},
        "features": {"sample_rate": "auto", "frame_seconds": "auto", "hop_seconds": "auto", "n_fft": "32ms",
                     "hop_length": "10ms", "n_mels": 32, **features},
        "model": {"name": "cnn", "channels": [4, 8]},
        "train": {"epochs": "auto", "patience": "auto", "monitor": "auto", "batch_size": 8},
    }  # fmt: skip


def test_audio_auto_values_come_from_the_training_files(tmp_path):
    r = recipe_from_dict(_audio_recipe(_audio_folder(tmp_path)))
    assert not r.features.resolved
    with pytest.raises(ValueError, match="resolved from the training data"):
        r.features.frame_samples  # noqa: B018 - an unresolved recipe cannot frame audio
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    f = resolved.features
    assert f.sample_rate == 22050  # 44.1 kHz files, capped
    assert "44100 Hz" in chosen["features.sample_rate"]["why"]
    # 95th percentile of {0.4, 0.6, 0.7, 0.9, 2.6} s clips lies between 0.9 and 2.6: rounded up to 0.25 s
    assert f.frame_seconds in (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75) and f.hop_seconds == f.frame_seconds / 2
    assert f.n_fft == 1024  # 32 ms at 22050 Hz is 706 samples -> next power of two
    assert f.hop_length == 220  # 10 ms
    n_train = len(prepare_data(r).splits["train"])
    assert resolved.train.epochs == min(_cap(n_train, f.frame_seconds), max(10, round(2000 / -(-n_train // 8))))
    assert resolved.train.patience == max(5, resolved.train.epochs // 3)
    assert resolved.train.monitor == "val_loss"  # a handful of validation clips
    assert set(chosen) == {"features.sample_rate", "features.frame_seconds", "features.hop_seconds",
                           "features.n_fft", "features.hop_length", "train.epochs", "train.patience",
                           "train.monitor"}  # fmt: skip


def test_low_rate_files_keep_their_rate_and_ms_sizes_follow_it(tmp_path):
    r = recipe_from_dict(_audio_recipe(_audio_folder(tmp_path, rate=8000)))
    f = resolve_auto(r, prepare_data(r))[0].features
    assert (f.sample_rate, f.n_fft, f.hop_length) == (8000, 256, 80)  # the same 32 ms and 10 ms


def test_a_run_stores_numbers_and_says_what_auto_chose(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = _audio_recipe(_audio_folder(tmp_path))
    raw["train"] |= {"epochs": 1, "baseline": False}
    res = attn.train(raw, out=str(tmp_path / "run"), device="cpu")
    stored = yaml.safe_load((res.run_dir / "recipe.yaml").read_text())
    assert stored["features"]["sample_rate"] == 22050 and stored["features"]["n_fft"] == 1024
    assert stored["train"]["monitor"] == "val_loss"
    assert "auto: features.sample_rate = 22050" in (res.run_dir / "train.log").read_text()
    assert res.data["auto"]["features.n_fft"]["value"] == 1024
    info = subprocess.run([sys.executable, "-m", "attn.cli", "info", str(res.run_dir)], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert "auto         features.sample_rate = 22050" in info
    # the model predicts with the numbers, without the data
    rec = attn.load(res.run_dir).predict([str(tmp_path / "audio" / "low" / "0.wav")])[0]
    assert rec["label"] in ("low", "high")


def _texts(tmp_path, lengths):
    path = tmp_path / "train.csv"
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["text", "label"])
        w.writeheader()
        for i, n in enumerate(lengths):
            w.writerow({"text": " ".join(rng.choice(["a", "b", "c", "d"], n)), "label": "xy"[i % 2]})
    return path


def test_text_max_len_auto_from_token_counts(tmp_path):
    path = _texts(tmp_path, [5] * 150 + [20] * 48 + [300, 301])  # 99th percentile: 20 tokens
    r = recipe_from_dict({"data": {"train": str(path)}, "features": {"kind": "text", "tokenizer": {"max_len": "auto"}},
                          "model": {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1}})  # fmt: skip
    resolved, prepared, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.features.tokenizer.max_len == 24  # 20 rounded up to a multiple of 8
    assert "training texts have at most 20 tokens" in chosen["features.tokenizer.max_len"]["why"]
    assert prepared.tokenizer is not None  # fitted once, reused by the run


def test_tokenize_from_a_recipe_with_max_len_auto(tmp_path):
    path = _texts(tmp_path, [5] * 20)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"train": str(path)},
                                      "features": {"kind": "text", "tokenizer": {"max_len": "auto"}}}))  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "attn.cli", "tokenize", "--recipe", str(recipe), "a b c"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["a", "b", "c"]


@pytest.mark.parametrize(
    "key, value, message",
    [("features.n_fft", "32 ms", "n_fft"), ("features.hop_length", "10s", "hop_length"),
     ("features.n_mels", "auto", "n_mels"), ("train.epochs", "many", "epochs")],
)  # fmt: skip
def test_bad_auto_or_ms_values_are_recipe_errors(tmp_path, tiny_recipe, key, value, message):
    with pytest.raises(attn.ConfigError, match=message):
        load_recipe(tiny_recipe(), [f"{key}={value}"])


@pytest.mark.parametrize(("seconds", "want"), [(3.0, "all"), (0.5, "random")])
def test_windows_auto_reads_every_window_of_long_recordings(tmp_path, seconds, want):
    """Long recordings cut into short windows: one random window per clip and epoch would see a
    fraction of the data, and `epochs: auto` would count clips, not the windows an epoch reads
    (a few long clips per class trained 60 epochs of 2 steps, best epoch the last)."""
    p = tmp_path / "r.yaml"
    p.write_text(f"""
data: {{synthetic: {{classes: [sine, chirp], per_class: 30, seconds: {seconds}}}}}
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}}
model: {{name: cnn, channels: [4, 8]}}
train: {{epochs: auto, windows: auto, batch_size: 8}}
""")
    r = load_recipe(p)
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.windows == want
    n_train = len(prepare_data(r).splits["train"])
    per_clip = 1 + int(np.ceil((seconds - 0.5) / 0.25))  # 11 windows of a 3 s clip, 1 of a 0.5 s one
    steps = int(np.ceil(n_train * per_clip / 8))
    assert resolved.train.epochs == min(max(round(2000 / steps), 10), _cap(n_train * per_clip, 0.5))
    assert "windows" in chosen["train.windows"]["why"]


def test_one_long_recording_does_not_decide_windows_for_the_rest(tmp_path):
    """30 one-second clips a class and one 20-minute file: by the mean (11 windows a clip) every
    epoch read the long file's 2400 windows, 91% of them of one class; the median clip decides."""
    for label, freq in (("a", 300), ("b", 900)):
        for i in range(30):
            write_wav(tmp_path / "d" / label / f"{i}.wav", tone(freq + i, 1.0, 8000), 8000)
    write_wav(tmp_path / "d" / "a" / "long.wav", tone(300, 1200.0, 8000), 8000)
    p = tmp_path / "r.yaml"
    p.write_text(f"""
data: {{root: {tmp_path / "d"}}}
features: {{sample_rate: 8000, frame_seconds: 1.0, hop_seconds: 0.5, n_fft: 256, hop_length: 128, n_mels: 24}}
model: {{name: cnn, channels: [4]}}
train: {{epochs: auto, windows: auto}}
""")
    r = load_recipe(p)
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.windows == "random"
    assert chosen["train.windows"]["why"].startswith("the median training clip holds 1 windows")


@pytest.mark.parametrize(("classes", "per_class", "epochs"), [(100, 20, 50), (10, 200, 32)])
def test_epochs_auto_gives_many_small_classes_their_passes(tmp_path, classes, per_class, epochs):
    """100 classes of 20 texts (63 steps an epoch): ~2000 steps would be 32 epochs, 32 passes over
    a class's 20 examples; the class term gives 1000 / 20 = 50. 10 classes of 200 in as many
    steps keep the steps' count (32 epochs, 6400 passes)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", classes * per_class), ("val", classes), ("test", classes)):
        with (tmp_path / f"{split}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            for i in range(n):
                w.writerow({"text": " ".join(rng.choice(["a", "b", "c", "d"], 5)), "label": f"c{i % classes}"})
    data = {split: str(tmp_path / f"{split}.csv") for split in ("train", "val", "test")}
    r = recipe_from_dict({"data": data, "features": {"kind": "text"}, "model": {"name": "cnn1d"},
                          "train": {"epochs": "auto", "batch_size": 32}})  # fmt: skip
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.epochs == epochs, chosen["train.epochs"]["why"]
    assert ("the median class has 20 examples" in chosen["train.epochs"]["why"]) == (per_class == 20)


def test_epochs_auto_keeps_text_from_scratch_within_60(tmp_path):
    """Only audio sets get the small-set epochs: 120 TREC questions trained from scratch stopped
    early near epoch 70 of 120 with the validation accuracy of 60 (docs/experiments.md)."""
    for split, n in (("train", 80), ("val", 10), ("test", 10)):
        with (tmp_path / f"{split}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            for i in range(n):
                w.writerow({"text": f"word{i % 7} other{i % 3}", "label": "ab"[i % 2]})
    data = {split: str(tmp_path / f"{split}.csv") for split in ("train", "val", "test")}
    r = recipe_from_dict({"data": data, "features": {"kind": "text"}, "model": {"name": "cnn1d"},
                          "train": {"epochs": "auto", "batch_size": 32}})  # fmt: skip
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.train.epochs == 60 and "small set" not in chosen["train.epochs"]["why"]


@pytest.mark.parametrize(
    ("clips", "seconds", "epochs"), [(20, 0.5, 200), (60, 2.0, 200), (100, 4.0, 180), (240, 5.0, 60)]
)
def test_epochs_auto_gives_small_audio_sets_the_seconds_of_60_esc10_epochs(tmp_path, clips, seconds, epochs):
    """Audio counts the seconds of windows a run reads: 60 epochs of ESC-10's 240 five-second
    clips. FSDD with 8 and 24 clips a digit (0.75 s windows) went from 60 to 200 epochs:
    validation 70.8 -> 77.9 and 92.5 -> 94.6 (docs/experiments.md)."""
    from helpers import tone, write_wav

    for i in range(clips):
        write_wav(tmp_path / "audio" / "ab"[i % 2] / f"{i}.wav", tone(220 * (1 + i % 2), seconds, 8000, seed=i), 8000)
    raw = _audio_recipe(tmp_path / "audio")
    raw["data"] |= {"val_fraction": 0.0, "test_fraction": 0.0}
    raw["train"] |= {"batch_size": 32}  # ~2000 steps would be more epochs than the cap in every case
    r = recipe_from_dict(raw)
    resolved, _, chosen = resolve_auto(r, prepare_data(r))
    assert resolved.features.frame_seconds == seconds
    assert resolved.train.epochs == epochs, chosen["train.epochs"]["why"]
    assert resolved.train.patience == max(5, epochs // 3)
    assert ("a small set: up to ~72,000 s of windows read" in chosen["train.epochs"]["why"]) == (epochs > 60)


def test_monitor_auto_without_validation_says_what_picks_the_epoch(tmp_path):
    """With no validation split the trainer keeps the epoch of lowest training loss: the log said
    'val_accuracy (0 validation examples)'."""
    p = tmp_path / "r.yaml"
    p.write_text("""
data: {synthetic: {classes: [sine, chirp], per_class: 10, seconds: 0.5}, val_fraction: 0, test_fraction: 0.2}
features: {sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}
model: {name: cnn, channels: [4]}
train: {monitor: auto}
""")
    r = load_recipe(p)
    _, _, chosen = resolve_auto(r, prepare_data(r))
    assert chosen["train.monitor"]["why"].startswith("no validation examples, so nothing to monitor: the saved epoch")
