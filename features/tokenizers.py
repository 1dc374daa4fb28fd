"""Tokenizers at three levels: characters, words (a documented regex), subwords (sentencepiece).

All share one interface and one id layout: <pad> = 0, <unk> = 1, then the vocabulary. A
tokenizer is fitted on the training texts only; its whole state is plain data (a vocabulary
list, or sentencepiece's model bytes) stored in the artifact, so prediction needs nothing else.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from .config import TokenizerConfig
from .ngrams import HASH, NgramHasher

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
CLS = "<cls>"  # shown by `attn tokenize` where the model prepends its learned class token


def train_sentencepiece(texts: list[str], cfg: TokenizerConfig) -> tuple[bytes, int]:
    """sentencepiece model bytes trained on `texts` (`cfg.vocab_size` pieces, `cfg.model_type`;
    ids 0/1 are <pad>/<unk>), and the size actually trained: a small corpus may not support the
    requested size, which is then halved until it does."""
    import sentencepiece as spm

    buf = io.BytesIO()
    vocab = cfg.vocab_size
    for _ in range(6):
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab,
                model_type=cfg.model_type, character_coverage=1.0,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1, eos_id=-1, pad_piece=PAD, unk_piece=UNK,
                num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,
                hard_vocab_limit=False, minloglevel=2, normalization_rule_name="identity",
            )  # fmt: skip
            break
        except RuntimeError as e:
            if "Vocabulary size" not in str(e) or vocab <= 16:
                raise
            vocab = max(16, vocab // 2)
            buf = io.BytesIO()
    return buf.getvalue(), vocab


class Tokenizer:
    """Base: `tokens(text) -> [str]`, `encode(text) -> [int]` (not truncated), `vocab_size`."""

    level = ""
    # True when every encoding ends with a special token the model must see (a pretrained
    # encoder's [SEP] or </s>): a text cut to max_len keeps it (`cut_to`).
    end_token = False

    def __init__(self, cfg: TokenizerConfig) -> None:
        self.cfg = cfg

    def normalize(self, text: str) -> str:
        # NFC first: "é" typed on macOS or pasted is often e + a combining accent (NFD), which
        # split into other tokens (other words, two characters) than the same text in NFC.
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text.lower() if self.cfg.lowercase else text

    def tokens(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def display_tokens(self, text: str) -> list[str]:
        """One string per id of `encode(text)`, as the text spells it (an unknown word as itself,
        not <unk>): what `attn explain` shows beside each token's weight."""
        return self.tokens(text)

    def words(self, text: str) -> tuple[list[str], list[int | None]]:
        """What `attn explain` weighs: the text's words as it spells them, and for each id of
        `encode(text)` the index of the word it is part of (None: a token the tokenizer adds
        itself, such as an encoder's [CLS]). Here every id is a word of its own."""
        shown = self.display_tokens(text)
        return shown, list(range(len(shown)))

    def encode_array(self, text: str) -> np.ndarray:
        """What the model is fed: (T,) int64 ids, or (T, 1 + K) with hashed n-grams (word level,
        `char_ngrams`/`word_ngrams`: column 0 the id, then bucket ids, 0-padded). Not truncated."""
        return np.asarray(self.encode(text), dtype=np.int64)

    def encode_cut(self, text: str, max_len: int) -> tuple[np.ndarray, int]:
        """(`encode_array(text)` cut to `max_len` as the model sees it (`cut_to`), the text's
        token count before the cut). Word level with hashed n-grams hashes only the words kept:
        the whole text's rows were (words x the most n-grams of any word), 6 GB for a 1 MB text
        with one 1000-character word, of which the model saw 24 rows."""
        ids = self.encode_array(text)
        return cut_to(ids, max_len, self.end_token), len(ids)

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def id_to_token(self, i: int) -> str:
        raise NotImplementedError

    def fit(self, texts: Iterable[str]) -> Tokenizer:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Any], bytes | None]:
        """(JSON-safe header, optional binary blob) that `from_state` rebuilds exactly."""
        raise NotImplementedError


class VocabTokenizer(Tokenizer):
    """Char and word levels: split, then look up in a frequency-ranked vocabulary."""

    def __init__(self, cfg: TokenizerConfig, vocab: list[str] | None = None) -> None:
        super().__init__(cfg)
        self.itos: list[str] = vocab or [PAD, UNK]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        return [t if t in self.stoi else UNK for t in self.split(self.normalize(text))]

    def display_tokens(self, text: str) -> list[str]:
        return self.split(self.normalize(text))

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(t, UNK_ID) for t in self.split(self.normalize(text))]

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def id_to_token(self, i: int) -> str:
        return self.itos[i]

    def fit(self, texts: Iterable[str]) -> VocabTokenizer:
        counts = Counter(t for text in texts for t in self.split(self.normalize(text)))
        # Most frequent first, ties alphabetical: the same texts always give the same ids.
        ranked = sorted((t for t, c in counts.items() if c >= self.cfg.min_freq), key=lambda t: (-counts[t], t))
        if self.cfg.max_size is not None:
            ranked = ranked[: self.cfg.max_size]
        self.itos = [PAD, UNK, *ranked]
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        return self

    def state(self) -> tuple[dict[str, Any], bytes | None]:
        return {"level": self.level, "vocab": self.itos}, None


class CharTokenizer(VocabTokenizer):
    level = "char"

    def split(self, text: str) -> list[str]:
        return list(text)


class _SentencePieceModel:
    """A sentencepiece model held as its proto bytes (what the artifact stores) and loaded."""

    model: bytes | None
    sp: object

    def _load(self, model: bytes) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.model = model


class WordTokenizer(_SentencePieceModel, VocabTokenizer):
    """Words by `cfg.pattern` (default: numbers, words with inner ' or -, single punctuation).

    With `cfg.unknown_words: subword`, a word outside the vocabulary (rarer than `min_freq`,
    past `max_size`, or new at prediction) is spelled as sentencepiece pieces (trained on the
    training texts, `vocab_size` pieces) instead of one <unk>. Piece ids follow the word ids;
    `tokens()` shows pieces in sentencepiece's form ("▁pen", "insula").
    """

    level = "word"

    def __init__(self, cfg: TokenizerConfig, vocab: list[str] | None = None, model: bytes | None = None) -> None:
        super().__init__(cfg, vocab)
        self.regex = re.compile(cfg.pattern)
        self.hasher = NgramHasher(cfg.char_ngrams, cfg.word_ngrams, cfg.ngram_buckets) if cfg.hashed_ngrams else None
        self.model: bytes | None = None
        self.sp = None
        if model is not None:
            self._load(model)

    def split(self, text: str) -> list[str]:
        return self.regex.findall(text)

    def fit(self, texts: Iterable[str]) -> WordTokenizer:
        texts = list(texts)
        super().fit(texts)
        if self.cfg.unknown_words == "subword":
            model, self.trained_vocab_size = train_sentencepiece([self.normalize(t) for t in texts], self.cfg)
            self._load(model)
        return self

    def _pieces(self, word: str) -> list[int]:
        """A word outside the vocabulary as piece ids (in this tokenizer's id space)."""
        if self.sp is None:
            return [UNK_ID]
        base = len(self.itos) - 2
        return [UNK_ID if i == UNK_ID else base + i for i in self.sp.encode(word) if i != PAD_ID]

    def tokens(self, text: str) -> list[str]:
        if self.sp is None:
            return super().tokens(text)
        return [self.id_to_token(i) for i in self.encode(text)]

    def display_tokens(self, text: str) -> list[str]:
        return super().display_tokens(text) if self.sp is None else self.tokens(text)

    def words(self, text: str) -> tuple[list[str], list[int | None]]:
        if self.sp is None:
            return super().words(text)
        shown, groups = [], []
        for t in self.split(self.normalize(text)):  # a word outside the vocabulary: its pieces
            groups += [len(shown)] * (1 if t in self.stoi else len(self._pieces(t)))
            shown.append(t)
        return shown, groups

    def encode(self, text: str) -> list[int]:
        if self.sp is None:
            return super().encode(text)
        out: list[int] = []
        for t in self.split(self.normalize(text)):
            i = self.stoi.get(t)
            out.extend([i] if i is not None else self._pieces(t))
        return out

    def encode_array(self, text: str) -> np.ndarray:
        if self.hasher is None:
            return super().encode_array(text)
        words = self.split(self.normalize(text))
        return self.hasher.encode_rows(words, [self.stoi.get(w, UNK_ID) for w in words])

    def encode_cut(self, text: str, max_len: int) -> tuple[np.ndarray, int]:
        if self.hasher is None:
            return super().encode_cut(text, max_len)
        words = self.split(self.normalize(text))
        kept = words[:max_len]  # a prefix: its rows (word bigrams too) are the whole text's first ones
        return self.hasher.encode_rows(kept, [self.stoi.get(w, UNK_ID) for w in kept]), len(words)

    @property
    def vocab_size(self) -> int:
        return len(self.itos) + (self.sp.get_piece_size() - 2 if self.sp is not None else 0)

    def id_to_token(self, i: int) -> str:
        return self.itos[i] if i < len(self.itos) else self.sp.id_to_piece(i - len(self.itos) + 2)

    def state(self) -> tuple[dict[str, Any], bytes | None]:
        header: dict[str, Any] = {"level": self.level, "vocab": self.itos}
        if self.hasher is not None:
            header["ngram_hash"] = HASH
        return header, self.model


class SubwordTokenizer(_SentencePieceModel, Tokenizer):
    """sentencepiece (unigram or BPE) trained on the training texts; ids 0/1 are <pad>/<unk>."""

    level = "subword"

    def __init__(self, cfg: TokenizerConfig, model: bytes | None = None) -> None:
        super().__init__(cfg)
        self.model = model
        self.sp = None
        if model is not None:
            self._load(model)

    def fit(self, texts: Iterable[str]) -> SubwordTokenizer:
        model, self.trained_vocab_size = train_sentencepiece([self.normalize(t) for t in texts], self.cfg)
        self._load(model)
        return self

    def tokens(self, text: str) -> list[str]:
        assert self.sp is not None, "tokenizer not fitted"
        return self.sp.encode(self.normalize(text), out_type=str)

    def encode(self, text: str) -> list[int]:
        assert self.sp is not None, "tokenizer not fitted"
        return self.sp.encode(self.normalize(text))

    def words(self, text: str) -> tuple[list[str], list[int | None]]:
        # A piece that starts with "▁" starts a word (a lone "▁" joins the piece after it).
        shown: list[str] = []
        groups: list[int | None] = []
        glued = False
        for piece in self.tokens(text):
            if not shown or (piece.startswith("\u2581") and not glued):
                shown.append("")
            shown[-1] += piece.replace("\u2581", " ")
            glued = piece == "\u2581"
            groups.append(len(shown) - 1)
        return [w.strip() or w for w in shown], groups

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() if self.sp is not None else 2

    def id_to_token(self, i: int) -> str:
        return self.sp.id_to_piece(i)

    def state(self) -> tuple[dict[str, Any], bytes | None]:
        return {"level": self.level}, self.model


_LEVELS = {"char": CharTokenizer, "word": WordTokenizer, "subword": SubwordTokenizer}


def cut_to(seq, max_len: int, end_token: bool = False):
    """The first `max_len` items of a sequence of a text's tokens (ids, token strings, word
    groups); with `end_token`, the first `max_len` - 1 and then the sequence's last item, as a
    Hugging Face tokenizer truncates: the encoder sees its end token on every text, cut or not."""
    if not end_token or len(seq) <= max_len or max_len < 2:
        return seq[:max_len]
    head, last = seq[: max_len - 1], seq[-1:]
    return np.concatenate([head, last]) if isinstance(seq, np.ndarray) else head + last


def make_tokenizer(cfg: TokenizerConfig) -> Tokenizer:
    if cfg.level == "encoder":
        raise ValueError("an encoder's tokenizer comes from its checkpoint (EncoderTokenizer.from_dir)")
    return _LEVELS[cfg.level](cfg)


def tokenizer_from_state(cfg: TokenizerConfig, header: dict[str, Any], blob: bytes | None) -> Tokenizer:
    if cfg.level == "encoder":
        raise ValueError("an encoder's tokenizer is rebuilt by EncoderTokenizer (features/encoder_tokenizer.py)")
    if cfg.level == "subword":
        if not blob:
            raise ValueError("subword tokenizer state lacks the sentencepiece model")
        return SubwordTokenizer(cfg, blob)
    if cfg.level == "word":
        if cfg.unknown_words == "subword" and not blob:
            raise ValueError("word tokenizer state lacks the sentencepiece model for unknown words")
        if cfg.hashed_ngrams and header.get("ngram_hash") != HASH:
            raise ValueError(f"n-grams hashed by {header.get('ngram_hash')!r}, this attn hashes by {HASH!r}")
        return WordTokenizer(cfg, list(header["vocab"]), blob if cfg.unknown_words == "subword" else None)
    return _LEVELS[cfg.level](cfg, list(header["vocab"]))


def load_vectors(path: str, tokenizer: Tokenizer, dim: int) -> tuple[dict[int, list[float]], int]:
    """Rows for known tokens: ({token_id: vector}, the vectors' width), from a named set
    (features/vectors.py, e.g. glove-6b-50d) or a GloVe/word2vec text file.

    The vectors may be narrower than the embedding (`dim`): they fill its first columns and the
    rest keep their random start. A text file accepts an optional word2vec header line ("count
    dim"); lines of different widths are an error naming the line.
    """
    from attn.errors import ConfigError

    from .vectors import is_named, named_vectors

    lookup = {tokenizer.id_to_token(i): i for i in range(2, tokenizer.vocab_size)}
    found: dict[int, list[float]] = {}
    if is_named(path):
        vector, width = named_vectors(path)
        if width > dim:
            raise ConfigError(f"features.embed_dim ({dim}) is narrower than the {width}-d vectors of {path}")
        for token, i in lookup.items():
            v = vector(token.lower() if tokenizer.cfg.lowercase else token)
            if v is not None:
                found[i] = v.tolist()
        return found, width
    try:
        f = open(path, encoding="utf-8", errors="strict")  # noqa: SIM115
    except OSError as e:
        raise ConfigError(f"{path}: cannot open word vectors ({e.strerror or e})") from None
    width = None
    with f:
        try:
            for n, line in enumerate(f, 1):
                # spaces (GloVe, word2vec's text format, which ends each line with one) or tabs
                parts = re.split(r"[ \t]+", line.strip(" \t\r\n"))
                if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                if len(parts) < 2:
                    continue
                word, values = parts[0], parts[1:]
                width = width or len(values)
                if len(values) != width or width > dim:
                    raise ConfigError(
                        f"{path}:{n}: vector has {len(values)} values, "
                        + (f"earlier lines have {width}" if len(values) != width else f"features.embed_dim is {dim}")
                        + (f" (set features.embed_dim={len(values)} or more)" if len(values) > dim else "")
                    )
                i = lookup.get(word if not tokenizer.cfg.lowercase else word.lower())
                if i is not None and i not in found:
                    try:
                        found[i] = [float(v) for v in values]
                    except ValueError:
                        raise ConfigError(f"{path}:{n}: not a number in the vector of {word!r}") from None
                    if not all(math.isfinite(v) for v in found[i]):  # training diverged at its first step
                        raise ConfigError(f"{path}:{n}: the vector of {word!r} holds NaN or infinite values")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: word vectors are not valid UTF-8 text (a word2vec binary file? attn reads the "
                              "text format: word v1 v2 ... per line)") from None  # fmt: skip
    if width is None:  # an empty file, or nothing in it that reads as a vector: every token started at random
        raise ConfigError(f"{path}: no word vectors in it (expected lines of a word and its values)")
    return found, width or dim
