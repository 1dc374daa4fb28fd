"""One registry for every model family: `name -> Backbone subclass`.

A family registers with `@register("name")`; its nested `Config` (a frozen pydantic model) types
its hyperparameters with defaults. `create` drops None kwargs so an unset option never overrides
a family default. Tests are generated from `names()`.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from attn.errors import ConfigError
from attn.schema import format_validation_error

_REGISTRY: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        cls.family = name
        _REGISTRY[name] = cls
        return cls

    return deco


def names() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def get(name: str) -> type:
    _load_families()
    if name not in _REGISTRY:
        near = difflib.get_close_matches(name, _REGISTRY, n=1, cutoff=0.4)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"model.name: unknown model {name!r}{hint} (known: {', '.join(names())})")
    return _REGISTRY[name]


def validate_params(name: str, params: dict[str, Any], source: str = "recipe"):
    """Typed, defaulted hyperparameters for family `name`, or a ConfigError naming the key."""
    cls = get(name)
    try:
        return cls.Config.model_validate({k: v for k, v in params.items() if v is not None})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, cls.Config, source, prefix=("model",))) from None


def create(name: str, in_dim: int, num_classes: int, **params: Any):
    """Build backbone `name` for inputs of `in_dim` channels and `num_classes` outputs."""
    cfg = validate_params(name, params)
    return get(name)(in_dim=in_dim, num_classes=num_classes, cfg=cfg)


def _load_families() -> None:
    # Importing the family modules runs their @register decorators.
    from attn.models import cnn, transformer, wavenet  # noqa: F401
