"""The recipe schema: frozen, typed, strict configs with defaults in one place.

A recipe has four sections, `data`, `features`, `model`, `train`. Unknown keys are errors (the
loader names the nearest valid key). The `model` section holds `name` plus that family's
hyperparameters, which the model registry validates (see `attn.models.registry`).
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from attn.schema import Fraction, NonNegFloat, NonNegInt, PosFloat, PosInt, Strict

SYNTH_CLASSES = ("sine", "square", "sawtooth", "noise_burst", "chirp", "am_tone")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")

# Recipe keys that hold file system paths: relative values resolve against the recipe's folder
# (or the working directory, for --set overrides).
PATH_KEYS = (
    ("data", "root"),
    ("data", "manifest"),
    ("data", "train"),
    ("data", "val"),
    ("data", "test"),
    ("data", "cache_dir"),
    ("features", "tokenizer", "vectors"),
)


class SyntheticConfig(Strict):
    """Built-in generated dataset: needs no files, deterministic from `seed`."""

    classes: tuple[Literal[SYNTH_CLASSES], ...] = SYNTH_CLASSES  # type: ignore[valid-type]
    per_class: PosInt = 200
    seconds: PosFloat = 1.0  # generated at features.sample_rate
    seed: int = 0


class DataConfig(Strict):
    """Where examples come from and how they split into train/val/test.

    Exactly one source: `synthetic`; `root` alone (folder per class, `root/<label>/*.wav`);
    `manifest` (CSV/TSV/JSONL with an optional split column, paths relative to `root` or to the
    manifest's folder); or `train` (+ optional `val`, `test`) manifests, one per split.
    """

    synthetic: SyntheticConfig | None = None
    root: str | None = None
    manifest: str | None = None
    train: str | None = None
    val: str | None = None
    test: str | None = None
    path_column: str = "path"
    text_column: str = "text"
    label_column: str = "label"
    split_column: str = "split"
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1
    split_seed: int = 0
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    cache_dir: str | None = None  # keep decoded, resampled audio here for the next run (see audio_cache.py)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = [
            name
            for name, on in (
                ("synthetic", self.synthetic is not None),
                ("manifest", self.manifest is not None),
                ("train", self.train is not None),
            )
            if on
        ]
        if len(sources) > 1:
            raise ValueError(f"give one data source, not {' and '.join(sources)}")
        if not sources and self.root is None:
            raise ValueError("no data source: set one of root, manifest, train or synthetic")
        if (self.val or self.test) and not self.train:
            raise ValueError("val/test manifests need a train manifest")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self

    @property
    def source(self) -> str:
        if self.synthetic is not None:
            return "synthetic"
        if self.manifest is not None:
            return "manifest"
        if self.train is not None:
            return "splits"
        return "folder"


class AudioFeatures(Strict):
    """How a waveform becomes the model's input. Names follow torchaudio/librosa.

    `kind`: logmel (dB), mfcc, spectrogram (power, dB), or waveform (raw samples, no front-end).
    Windows of `frame_seconds` every `hop_seconds` are cut from each clip; the last is padded and
    its true length carried so the model ignores the padding.
    """

    tag: ClassVar[str] = "audio"
    kind: Literal["logmel", "mfcc", "spectrogram", "waveform"] = "logmel"
    sample_rate: PosInt = 16000
    frame_seconds: PosFloat = 1.0
    hop_seconds: PosFloat = 0.5
    n_fft: PosInt = 512
    win_length: PosInt | None = None
    hop_length: PosInt = 160
    n_mels: PosInt = 64
    f_min: NonNegFloat = 0.0
    f_max: PosFloat | None = None
    power: Literal[1.0, 2.0] = 2.0
    center: bool = True
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney"] | None = "slaney"
    # dB = 10*log10(max(S, amin) / ref): a fixed reference and floor, never the clip's maximum,
    # so a window gives the same numbers alone or cut from a longer file.
    ref: PosFloat = 1.0
    amin: PosFloat = 1e-10
    n_mfcc: PosInt = 20

    @model_validator(mode="after")
    def _consistent(self) -> AudioFeatures:
        nyquist = self.sample_rate / 2
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.f_max is not None and self.f_max > nyquist:
            raise ValueError(f"f_max ({self.f_max}) is above the Nyquist frequency ({nyquist:g})")
        if self.f_min >= (self.f_max or nyquist):
            raise ValueError(f"f_min ({self.f_min}) must be below f_max ({self.f_max or nyquist:g})")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")
        if round(self.frame_seconds * self.sample_rate) < 1:
            raise ValueError("frame_seconds is shorter than one sample")
        return self

    @property
    def frame_samples(self) -> int:
        return max(1, round(self.frame_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return max(1, round(self.hop_seconds * self.sample_rate))


# Numbers with separators ("1,000", "3.5"), words with inner hyphens ("e-mail"), clitics as their
# own token ("what's" -> "what", "'s", as in TREC-style tokenised text), or any single other
# non-space character (punctuation is a token).
WORD_PATTERN = r"\d+(?:[.,]\d+)*|\w+(?:-\w+)*|'\w+|[^\w\s]"


class TokenizerConfig(Strict):
    """How text becomes token ids. `<pad>` is id 0 and `<unk>` id 1 at every level.

    level: char (every character), word (`pattern`, a documented regex; default WORD_PATTERN),
    or subword (sentencepiece, trained on the training split only, `model_type` unigram or bpe,
    `vocab_size` pieces). Vocabularies keep tokens seen at least `min_freq` times, at most
    `max_size` of them (most frequent first). Longer texts are cut to `max_len` tokens (counted
    and reported).

    unknown_words (word level): unk maps every word outside the vocabulary to <unk>; subword
    spells it as sentencepiece pieces instead (a sentencepiece model of `vocab_size` pieces,
    `model_type`, trained on the training texts), so a rare or unseen word keeps its spelling
    ("peninsula" -> "▁pen", "insula") and shares pieces with words seen in training.
    """

    level: Literal["char", "word", "subword"] = "word"
    lowercase: bool = True
    pattern: str = WORD_PATTERN
    min_freq: PosInt = 1
    max_size: PosInt | None = None
    vocab_size: Annotated[int, Field(ge=8)] = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"
    max_len: PosInt = 128
    unknown_words: Literal["unk", "subword"] = "unk"
    vectors: str | None = None  # GloVe/word2vec text file: initialises embeddings of known tokens
    # fastText-style subword information (word level): each word also carries the hashed ids of
    # its character n-grams of lengths char_ngrams[0]..char_ngrams[1] ("<" and ">" mark the word's
    # edges), and with word_ngrams 2 the hashed (previous word, word) pair, in `ngram_buckets`
    # shared buckets. An unseen word is then <unk> plus its n-grams: close to words spelled alike.
    char_ngrams: tuple[PosInt, PosInt] | None = None
    word_ngrams: Literal[1, 2] = 1
    ngram_buckets: PosInt = 100_000

    @model_validator(mode="after")
    def _ngrams(self) -> TokenizerConfig:
        if self.char_ngrams is not None and self.char_ngrams[0] > self.char_ngrams[1]:
            raise ValueError(f"char_ngrams: shortest ({self.char_ngrams[0]}) exceeds longest ({self.char_ngrams[1]})")
        if self.hashed_ngrams and (self.level != "word" or self.unknown_words != "unk"):
            raise ValueError("char_ngrams/word_ngrams need level: word with unknown_words: unk")
        return self

    @property
    def hashed_ngrams(self) -> bool:
        """Whether tokens carry hashed n-gram ids besides their word id."""
        return self.char_ngrams is not None or self.word_ngrams > 1

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e})") from None
        return v


class TextFeatures(Strict):
    """Text front-end: tokenizer, then a learned token embedding of `embed_dim` on the device."""

    tag: ClassVar[str] = "text"
    kind: Literal["text"] = "text"
    tokenizer: TokenizerConfig = TokenizerConfig()
    embed_dim: PosInt = 128
    embed_dropout: Fraction = 0.0  # dropout on the embedded tokens (training only)
    word_dropout: Fraction = 0.0  # replace this fraction of tokens with <unk> (training only)
    ngram_combine: Literal["mean", "sum"] = "mean"  # word vector with its hashed n-gram vectors


def _features_tag(v: Any) -> str:
    kind = v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)
    return "text" if kind == "text" else "audio"


Features = Annotated[
    Annotated[AudioFeatures, Tag("audio")] | Annotated[TextFeatures, Tag("text")],
    Discriminator(_features_tag),
]


class ModelSection(BaseModel):
    """`name` picks a registered family; the other keys are that family's hyperparameters,
    validated by the registry (unknown ones are errors before any data loads)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "cnn"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AugmentConfig(Strict):
    """Training-only augmentation, applied to the features on the model's device."""

    freq_mask: NonNegInt = 0  # widest frequency mask (bins); 0 = off
    time_mask: NonNegInt = 0  # widest time mask (frames); 0 = off
    masks: NonNegInt = 2  # masks of each kind per example
    gain_db: NonNegFloat = 0.0  # random gain in [-gain_db, +gain_db]


class TrainConfig(Strict):
    """Optimisation: AdamW, linear warmup then cosine (or constant) decay, early stopping."""

    epochs: PosInt = 30
    batch_size: PosInt = 32
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 0.01
    warmup: Fraction = 0.05  # fraction of all steps
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: NonNegFloat = 1.0  # max global grad norm; 0 = off
    label_smoothing: Fraction = 0.0
    patience: NonNegInt = 10  # epochs without improvement before stopping; 0 = never stop early
    monitor: Literal["val_accuracy", "val_loss", "val_macro_f1"] = "val_accuracy"
    seed: int = 0
    ensemble: PosInt = 1  # train this many models (seeds seed, seed+1, ...) and average their probabilities
    windows: Literal["random", "all"] = "random"  # per clip and epoch: one random window, or all
    augment: AugmentConfig = AugmentConfig()
    frontend_lr_scale: PosFloat = 1.0  # learning rate multiplier for the front-end (text embedding)
    ema: Fraction = 0.0  # evaluate and keep an exponential moving average of the weights; 0 = off
    pretrain_epochs: NonNegInt = 0  # text: masked-token pretraining on the training texts first
    mask_prob: Annotated[float, Field(gt=0, lt=1)] = 0.15  # share of tokens masked when pretraining
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the training forward pass (pays off on GPU; not on 2 CPU cores)


class Recipe(Strict):
    """A whole experiment. Build one with `attn.pipelines.recipe.load_recipe`."""

    data: DataConfig
    features: Features = AudioFeatures()
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()

    @field_validator("features", mode="before")
    @classmethod
    def _known_kind(cls, v: Any) -> Any:
        kinds = (*typing.get_args(AudioFeatures.model_fields["kind"].annotation), "text")
        kind = v.get("kind") if isinstance(v, dict) else None
        if kind is not None and kind not in kinds:
            raise ValueError(f"kind must be one of {', '.join(kinds)} (got {kind!r})")
        return v

    @property
    def modality(self) -> str:
        return "text" if isinstance(self.features, TextFeatures) else "audio"
