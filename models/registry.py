"""One registry for every model family: `name -> Backbone subclass`.

A family registers with `@register("name")`; its nested `Config` (a frozen pydantic model) types
its hyperparameters with defaults. A recipe's `model` section holds the validated `Config` and
`build` makes the backbone from it; `create(name, ..., **kwargs)` validates keyword arguments
first, dropping None ones so an unset option never overrides a family default. Tests are
generated from `names()`.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from attn.errors import ConfigError
from attn.schema import format_validation_error

from .families import FAMILIES, register

__all__ = ["build", "config", "create", "get", "names", "register", "unknown_name", "validate_params"]


def names() -> list[str]:
    _load_families()
    return sorted(FAMILIES)


def get(name: str) -> type:
    _load_families()
    if name not in FAMILIES:
        raise ConfigError(f"model.name: {unknown_name(name)}")
    return FAMILIES[name]


def unknown_name(name: Any) -> str:
    """What to say about a model name that is not registered."""
    near = difflib.get_close_matches(name, names(), n=1, cutoff=0.4) if isinstance(name, str) else []
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown model {name!r}{hint} (known: {', '.join(names())})"


def config(name: str, params: dict[str, Any]):
    """Family `name`'s typed, defaulted `Config` from `params` (None values left to the default);
    raises pydantic's ValidationError."""
    return get(name).Config.model_validate({k: v for k, v in params.items() if v is not None})


def validate_params(name: str, params: dict[str, Any], source: str = "recipe"):
    """`config`, or a ConfigError naming the key."""
    try:
        return config(name, params)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, get(name).Config, source, prefix=("model",))) from None


def build(name: str, in_dim: int, num_classes: int, cfg):
    """Backbone `name` from its validated `Config` (a recipe's `model.config`), for inputs of
    `in_dim` channels and `num_classes` outputs."""
    family = get(name)
    if not isinstance(cfg, family.Config):
        raise TypeError(f"model {name!r} is built from a {family.__name__}.Config, not {type(cfg).__name__}")
    return family(in_dim=in_dim, num_classes=num_classes, cfg=cfg)


def create(name: str, in_dim: int, num_classes: int, **params: Any):
    """Build backbone `name` from keyword hyperparameters (validated; None means the default)."""
    return build(name, in_dim, num_classes, validate_params(name, params))


def _load_families() -> None:
    # Importing the family modules runs their @register decorators.
    from attn.models import cnn, cnn1d, pooled, transformer, wavenet  # noqa: F401
