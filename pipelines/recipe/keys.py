"""Dotted recipe keys ("train.lr", "features.tokenizer.max_len") on plain recipe data: the one
place that reads, sets and checks them, for `--set`, the values `auto` resolves, the tuning
space and each trial's values; `replaced` sets them on a validated (frozen) Recipe."""

from __future__ import annotations

import copy
import difflib
from typing import Any

from pydantic import BaseModel

from attn.errors import ConfigError


def get(raw: dict[str, Any], key: str) -> Any:
    """The value at `key` (KeyError when a part is missing)."""
    node: Any = raw
    for part in key.split("."):
        node = node[part]
    return node


def put(raw: dict[str, Any], key: str, value: Any, source: str = "recipe") -> None:
    """Set `key` to `value` in place, making missing sections; a part that holds a value, not a
    section, is a ConfigError naming `source`."""
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{source}: {where} is a {kind(nxt)}, not a section")
        node = nxt
    node[parts[-1]] = value


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of plain recipe data with dotted keys set."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        put(out, key, value)
    return out


def replaced(model: BaseModel, values: dict[str, Any]) -> Any:
    """A copy of a frozen config (a Recipe or one of its sections) with dotted keys set, each
    section on the way copied with `model_copy(update=...)`. Nothing is validated again: the
    caller validates when a schema rule must see the new values."""
    here: dict[str, Any] = {}
    below: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if rest:
            below.setdefault(head, {})[rest] = value
        else:
            here[head] = value
    here.update({head: replaced(getattr(model, head), sub) for head, sub in below.items()})
    return model.model_copy(update=here)


def missing(raw: dict[str, Any], key: str) -> str | None:
    """Why `key` is not a key of `raw`, or None when it is."""
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            where = ".".join(parts[:i])
            return f"not a key of this recipe ({where} is {'not set' if node is None else 'a value, not a section'})"
        if part not in node:
            near = difflib.get_close_matches(key, all_keys(raw), n=1, cutoff=0.75)
            if near:
                return f"not a key of this recipe; did you mean {near[0]!r}?"
            return f"not a key of this recipe ({'.'.join(parts[:i]) or 'a recipe'} has no {part!r})"
        node = node[part]
    return None


def all_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of `node`, sections included."""
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    return [k for name, v in node.items() for k in all_keys(v, f"{prefix}.{name}" if prefix else name)] + (
        [prefix] if prefix else []
    )


def kind(x: Any) -> str:
    """How an error names a value's type."""
    return {dict: "mapping", list: "list", str: "string"}.get(type(x), type(x).__name__)
