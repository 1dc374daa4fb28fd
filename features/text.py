"""The text front-end: token ids -> learned embeddings, on the model's device.

    forward(ids (B, T) int64, lengths (B,)) -> (emb (B, E, T), lengths (B,))
    forward(ids (B, T, 1 + K) int64, lengths (B,)): the same, ids[..., 0] the token ids and
        ids[..., 1:] each token's hashed n-gram buckets (0 = none; see features/ngrams.py)

Same (features, lengths) shape convention as the audio front-ends, so every backbone takes text
with no special case.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TextFeatures
from .tokenizers import PAD_ID, UNK_ID


class TextFrontend(nn.Module):
    """Embedding of `vocab_size` x `embed_dim` (<pad> row is zero and gets no gradient).

    In training, `word_dropout` replaces that fraction of valid tokens with <unk> (so the model
    learns to use context for unseen words) and `embed_dropout` drops embedding units.

    With `ngram_buckets` (hashed n-grams: `tokenizer.char_ngrams`/`word_ngrams`) a token's
    vector is, as in fastText, the mean of its word vector and its n-gram vectors
    (`ngram_combine: sum` adds them instead); word dropout then keeps the n-grams, which is
    exactly what an unseen word looks like at prediction: <unk> plus its spelling.
    `TextFrontend.from_config(features, vocab_size)` builds the one a recipe describes.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        embed_dropout: float = 0.0,
        word_dropout: float = 0.0,
        ngram_buckets: int | None = None,
        ngram_combine: str = "mean",
    ) -> None:
        super().__init__()
        self.word_dropout, self.ngram_combine = word_dropout, ngram_combine
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=embed_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.ngrams = None
        if ngram_buckets is not None:  # row 0 pads; rows 1..buckets are n-gram buckets
            self.ngrams = nn.EmbeddingBag(ngram_buckets + 1, embed_dim, mode="sum", padding_idx=0)
            nn.init.normal_(self.ngrams.weight, std=embed_dim**-0.5)
            with torch.no_grad():
                self.ngrams.weight[0].zero_()
        self.dropout = nn.Dropout(embed_dropout)
        self.out_dim = embed_dim

    @classmethod
    def from_config(cls, cfg: TextFeatures, vocab_size: int) -> TextFrontend:
        """The front-end of a recipe's text `features` section, for a fitted vocabulary."""
        tc = cfg.tokenizer
        return cls(vocab_size, cfg.embed_dim, cfg.embed_dropout, cfg.word_dropout,
                   tc.ngram_buckets if tc.hashed_ngrams else None, cfg.ngram_combine)  # fmt: skip

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grams = None
        if ids.dim() == 3:
            ids, grams = ids[..., 0], ids[..., 1:]  # (B, T), (B, T, K)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.word_dropout
            ids = torch.where(drop & (ids != PAD_ID), torch.full_like(ids, UNK_ID), ids)
        emb = self.embed(ids)  # (B, T, E)
        if grams is not None and self.ngrams is not None and grams.shape[-1]:
            b, t, k = grams.shape
            bag = self.ngrams(grams.reshape(b * t, k)).view(b, t, -1)  # (B, T, E): sum of n-gram rows
            emb = emb + bag
            if self.ngram_combine == "mean":  # over the word vector and its n-grams (pads: 0 / 1)
                emb = emb / (1 + (grams != 0).sum(-1, keepdim=True)).to(emb.dtype)
        emb = self.dropout(emb)
        return emb.transpose(1, 2), lengths  # (B, E, T)

    @torch.no_grad()
    def load_vectors(self, rows: dict[int, list[float]]) -> None:
        """Initialise the embedding rows of known tokens from pretrained vectors; narrower vectors
        fill the first columns (the rest keep their random start)."""
        if not rows:
            return
        idx = torch.tensor(list(rows), dtype=torch.long)
        vec = torch.tensor(list(rows.values()), dtype=self.embed.weight.dtype)
        self.embed.weight[idx, : vec.shape[1]] = vec
