"""A pretrained encoder's own tokenizer (Hugging Face `tokenizers`), behind attn's Tokenizer API.

The checkpoint's tokenizer.json (or, for an older BERT checkpoint, its vocab.txt) defines the
ids the encoder was pretrained on, special tokens included ([CLS] ... [SEP] or <s> ... </s>);
attn neither fits nor changes it. Its JSON is the tokenizer's state, kept in the model file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import TokenizerConfig
from .tokenizers import Tokenizer, tokenizer_from_state


class EncoderTokenizer(Tokenizer):
    level = "encoder"

    def __init__(self, cfg: TokenizerConfig, spec: bytes) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        super().__init__(cfg)
        self.spec = spec
        try:
            self.tok = HFTokenizer.from_str(spec.decode("utf-8"))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exceptions with its parser's text
            raise ValueError(f"not a tokenizer.json the tokenizers library can read ({str(e)[:200]})") from None
        # attn truncates to max_len and pads itself; the checkpoint's own settings would do it twice.
        self.tok.no_truncation()
        self.tok.no_padding()
        # [CLS] ... [SEP], <s> ... </s>: the post-processor's closing token stays on a cut text
        probe = self.tok.encode("a")
        self.end_token = bool(probe.special_tokens_mask and probe.special_tokens_mask[-1])

    @classmethod
    def from_dir(cls, cfg: TokenizerConfig, path: Path, lowercase: bool = True) -> EncoderTokenizer:
        """The tokenizer of a checkpoint directory: tokenizer.json, else a WordPiece vocab.txt
        (BERT's original format: lowercased when the checkpoint's tokenizer_config says so)."""
        spec = path / "tokenizer.json"
        if spec.is_file():
            return cls(cfg, spec.read_bytes())
        vocab = path / "vocab.txt"
        if not vocab.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json or vocab.txt (the checkpoint's tokenizer)")
        from tokenizers import BertWordPieceTokenizer

        wp = BertWordPieceTokenizer(str(vocab), lowercase=lowercase)
        return cls(cfg, wp._tokenizer.to_str().encode("utf-8"))

    def _enc(self, text: str):
        return self.tok.encode(text)

    def tokens(self, text: str) -> list[str]:
        return self._enc(text).tokens

    def encode(self, text: str) -> list[int]:
        return self._enc(text).ids

    def display_tokens(self, text: str) -> list[str]:
        enc = self._enc(text)
        # A word piece as the text spells it (its offsets); special tokens as themselves.
        return [text[a:b] if b > a else t for t, (a, b) in zip(enc.tokens, enc.offsets, strict=True)]

    def words(self, text: str) -> tuple[list[str], list[int | None]]:
        # Word pieces of one pre-tokenized word ("play", "##ing") are one word; the special
        # tokens the encoder adds ([CLS], [SEP], <s>) belong to none.
        enc = self._enc(text)
        where: list[list[int]] = []  # each word's [start, end) characters in the text
        index: dict[int, int] = {}  # the tokenizer's word id -> index in `where`
        groups: list[int | None] = []
        for i, (special, word, (a, b)) in enumerate(zip(enc.special_tokens_mask, enc.word_ids, enc.offsets,
                                                        strict=True)):  # fmt: skip
            if special:
                groups.append(None)
                continue
            key = word if word is not None else -1 - i  # no word id: a word of its own
            if key not in index:
                index[key] = len(where)
                where.append([a, b])
            g = index[key]
            where[g] = [min(where[g][0], a), max(where[g][1], b)]
            groups.append(g)
        return [text[a:b] if b > a else enc.tokens[groups.index(g)] for g, (a, b) in enumerate(where)], groups

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def id_to_token(self, i: int) -> str:
        return self.tok.id_to_token(i) or f"<{i}>"

    def fit(self, texts: Iterable[str]) -> EncoderTokenizer:
        return self  # pretrained: never fitted to the user's texts

    def state(self) -> tuple[dict[str, Any], bytes | None]:
        return {"level": self.level}, self.spec

    def portable_spec(self, max_len: int) -> bytes:
        """The tokenizer.json as a user of an exported model runs it outside attn: truncated to
        `max_len` (its special tokens kept, as `cut_to` cuts) and unpadded, whatever the
        checkpoint's own file set (one kept its pretraining's 128 tokens, padded)."""
        from tokenizers import Tokenizer as HFTokenizer

        tok = HFTokenizer.from_str(self.tok.to_str())
        tok.enable_truncation(max_length=max_len)
        tok.no_padding()
        return tok.to_str().encode("utf-8")


def restore_tokenizer(cfg: TokenizerConfig, header: dict[str, Any], blob: bytes | None) -> Tokenizer:
    """Any level's tokenizer from its saved state (`tokenizers.tokenizer_from_state` for attn's own
    levels; here because this module builds on that one, not the reverse)."""
    if cfg.level == "encoder":
        if not blob:
            raise ValueError("encoder tokenizer state lacks its tokenizer.json")
        return EncoderTokenizer(cfg, blob)
    return tokenizer_from_state(cfg, header, blob)
