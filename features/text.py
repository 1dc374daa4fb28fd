"""The text front-end: token ids -> learned embeddings, on the model's device.

    forward(ids (B, T) int64, lengths (B,)) -> (emb (B, E, T), lengths (B,))

Same (features, lengths) shape convention as the audio front-ends, so every backbone takes text
with no special case.
"""

from __future__ import annotations

import torch
from torch import nn

from attn.pipelines.config import TextFeatures

from .tokenizers import PAD_ID, UNK_ID


class TextFrontend(nn.Module):
    """Embedding of `vocab_size` x `embed_dim` (<pad> row is zero and gets no gradient).

    In training, `word_dropout` replaces that fraction of valid tokens with <unk> (so the model
    learns to use context for unseen words) and `embed_dropout` drops embedding units.
    """

    def __init__(self, cfg: TextFeatures, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, std=cfg.embed_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.dropout = nn.Dropout(cfg.embed_dropout)
        self.out_dim = cfg.embed_dim

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.cfg.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.cfg.word_dropout
            ids = torch.where(drop & (ids != PAD_ID), torch.full_like(ids, UNK_ID), ids)
        emb = self.dropout(self.embed(ids))  # (B, T, E)
        return emb.transpose(1, 2), lengths  # (B, E, T)

    @torch.no_grad()
    def load_vectors(self, rows: dict[int, list[float]]) -> None:
        """Initialise the embedding rows of known tokens from pretrained vectors."""
        if not rows:
            return
        idx = torch.tensor(list(rows), dtype=torch.long)
        vec = torch.tensor(list(rows.values()), dtype=self.embed.weight.dtype)
        self.embed.weight[idx] = vec
