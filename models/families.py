"""Where model families register: `@register("name")` on a `Backbone` subclass puts it in
`FAMILIES`. Lookups go through registry.py, which imports the family modules; they import only
this module, so the registry and the families never import each other."""

from __future__ import annotations

FAMILIES: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in FAMILIES:
            raise ValueError(f"model {name!r} registered twice")
        cls.family = name
        FAMILIES[name] = cls
        return cls

    return deco
