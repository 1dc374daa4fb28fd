"""Build the model a recipe describes (used by training and by artifact loading alike)."""

from __future__ import annotations

from typing import Any

from .config import Recipe


def build_frontend(recipe: Recipe, tokenizer_state: dict[str, Any] | None = None):
    from attn.features.transforms import AudioFrontend

    return AudioFrontend(recipe.features)


def build_model(recipe: Recipe, num_classes: int, tokenizer_state: dict[str, Any] | None = None):
    """Front-end + registered backbone -> `Classifier` (on the CPU, freshly initialised)."""
    from attn.models import registry
    from attn.models.classifier import Classifier

    frontend = build_frontend(recipe, tokenizer_state)
    backbone = registry.create(recipe.model.name, frontend.out_dim, num_classes, **recipe.model.params)
    return Classifier(frontend, backbone, augment=recipe.train.augment)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
