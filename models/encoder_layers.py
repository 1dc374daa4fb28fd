"""Which of a pretrained audio encoder's weights train (`features.encoder.finetune`), shared by
the front-ends of models/hf_audio.py (wav2vec 2.0 family) and models/hf_ast.py (AST)."""

from __future__ import annotations

from torch import nn


class PretrainedEncoder(nn.Module):
    """What the audio encoders' front-ends share: `self.encoder` (transformers' module) with
    `self.layers` transformer layers, and which of its weights train. Subclasses give
    `depth_of(name)`: 0 below the layers, i + 1 for layer i."""

    encoder: nn.Module
    layers: int

    def depth_of(self, name: str) -> int:
        raise NotImplementedError

    def set_trainable(self, finetune: str | int) -> None:
        """finetune: "all", "frozen", or N (the top N layers train)."""
        top = {"all": self.layers + 1, "frozen": 0}.get(finetune, finetune)
        self.trained_from = self.layers + 1 - min(int(top), self.layers + 1)
        for name, p in self.encoder.named_parameters():
            p.requires_grad_(self.depth_of(name) >= self.trained_from)
        self.train()

    @property
    def frozen(self) -> bool:
        return self.trained_from > self.layers

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def lr_scales(self, decay: float) -> dict[int, float]:
        top = self.layers + 1
        return {id(p): decay ** (top - self.depth_of(n)) for n, p in self.encoder.named_parameters()}
