"""attn.models: the model registry, the backbone contract and the model families.

Every family is a `Backbone`: `forward(x (B, T, C), lengths (B,)) -> logits (B, K)`.
"""

from attn.models.registry import create, get, names, register

__all__ = ["create", "get", "names", "register"]
