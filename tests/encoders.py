"""Test helpers: tiny randomly initialised Hugging Face text encoders (saved as `save_pretrained`
does, with a word-level tokenizer.json) and a two-class text set over their words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was", "a", "plot", "and", "very", "it"]


def _write_tokenizer(d: Path, kind: str) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    if kind == "roberta":
        special = ["<s>", "<pad>", "</s>", "<unk>"]
        cls, sep, unk = "<s>", "</s>", "<unk>"
    else:
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        cls, sep, unk = "[CLS]", "[SEP]", "[UNK]"
    vocab = {t: i for i, t in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    tok.save(str(d / "tokenizer.json"))


def make_checkpoint(d: Path, kind: str = "bert", seed: int = 0) -> Path:
    """A tiny randomly initialised encoder saved as Hugging Face does (config.json,
    model.safetensors) with a word-level tokenizer.json over WORDS."""
    vocab = len(WORDS) + 5
    torch.manual_seed(seed)
    if kind == "distilbert":
        cfg = _transformers().DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                            max_position_embeddings=64)  # fmt: skip
    else:
        cls = _transformers().RobertaConfig if kind == "roberta" else _transformers().BertConfig
        extra = {"pad_token_id": 1} if kind == "roberta" else {}
        cfg = cls(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, **extra)  # fmt: skip
    model = _transformers().AutoModel.from_config(cfg)
    model.save_pretrained(str(d), safe_serialization=True)
    _write_tokenizer(d, kind)
    return d


def texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    pos, neg, filler = WORDS[:3], WORDS[3:6], WORDS[6:]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(filler, 6)) + [rng.choice(pos if label == "pos" else neg)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _transformers():
    import transformers

    return transformers
