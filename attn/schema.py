"""The schema base every layer's config builds on: frozen, strict pydantic models, constrained
number types, and one-line validation messages with the dotted key and a "did you mean".

Each layer defines its own sections (features/config.py, each model family's nested `Config`,
pipelines/recipe/config.py composes them into the recipe); all share this base and this error format.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
# Finite: `lr=.inf` or `frame_seconds: .inf` pass `> 0` but mean nothing (NaN fails every bound).
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
# A value derived from the training data when a run starts (pipelines/data/auto.py); the resolved,
# concrete value is what the run's recipe.yaml and model file keep.
Auto = typing.Literal["auto"]
# A length in milliseconds ("25ms"), for sizes otherwise counted in samples: it means the same
# time at any sample rate, resolved to samples when the run starts.
Millis = Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?ms$")]


def millis(value: str) -> float:
    """ "25ms" -> 25.0."""
    return float(value[:-2])


class Strict(BaseModel):
    """Base for every config: immutable, unknown keys rejected."""

    # no protected namespaces: tokenizer.model_type (sentencepiece's word) is a recipe key, and
    # pydantic before 2.10 warned about any field named model_* on every command
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class NestedError(ValueError):
    """A part of a section checked by its own schema inside a validator (a model family's `Config`
    within the recipe's `model` section). Raised there, pydantic reports it at the section's key,
    and `format_validation_error` words it as if the outer schema had found it: the full dotted
    key and the nearest valid key of the inner schema.

    Either `error` with the `schema` that raised it, or `key` (relative to the section) with a
    `message`.
    """

    def __init__(
        self,
        error: ValidationError | None = None,
        schema: type[BaseModel] | None = None,
        *,
        key: str = "",
        message: str = "",
    ) -> None:
        super().__init__(message or str(error))
        self.error, self.schema, self.key, self.message = error, schema, key, message


def format_validation_error(
    err: ValidationError, root: type[BaseModel], source: str, prefix: tuple[str, ...] = ()
) -> str:
    """One line: `source: dotted.key: problem` (+ "did you mean" for unknown keys)."""
    return f"{source}: {describe_validation_error(err, root, prefix)}"


def describe_validation_error(err: ValidationError, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> str:
    """`dotted.key: problem` for the first error (+ how many more there are)."""
    msg, more = _describe(err, root, prefix)
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return msg


def _describe(err: ValidationError, root: type[BaseModel], prefix: tuple[str, ...]) -> tuple[str, int]:
    """(`dotted.key: problem` for the first error, how many other problems there are)."""
    errors = err.errors()
    first = errors[0]
    # A value of a scalar union (`PosInt | Auto`) fails once per member, each at the field's key
    # plus a pydantic tag ("constrained-int", "literal['auto']"): one problem, not several.
    field_loc = _strip_member_tags(tuple(first["loc"]))
    alternatives = [e for e in errors if _strip_member_tags(tuple(e["loc"])) == field_loc]
    more = len({_strip_member_tags(tuple(e["loc"])) for e in errors}) - 1
    raw_loc = field_loc
    loc = _clean_loc(raw_loc, root)
    dotted = ".".join(str(p) for p in (*prefix, *loc)) or "(top level)"
    kind = first["type"]
    nested = (first.get("ctx") or {}).get("error")
    if isinstance(nested, NestedError):
        if nested.error is not None and nested.schema is not None:
            msg, inner = _describe(nested.error, nested.schema, (*prefix, *map(str, loc)))
            more += inner
        else:
            msg = f"{'.'.join(p for p in (dotted, nested.key) if p)}: {nested.message}"
    elif kind == "extra_forbidden":
        valid = _fields_of(_walk(root, raw_loc[:-1]))
        msg = f"unknown key {dotted!r}"
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        if near:
            msg += f"; did you mean {'.'.join((*prefix, *map(str, loc[:-1]), near[0]))!r}?"
        elif valid:
            msg += f"; valid keys here: {', '.join(valid)}"
    elif kind == "missing":
        msg = f"{dotted}: required key is missing"
    else:
        got = first.get("input")
        detail = first["msg"]
        if kind.startswith("value_error"):
            detail = detail.removeprefix("Value error, ")
        literals = [
            str(e["ctx"]["expected"]) for e in alternatives[1:] if e["type"] == "literal_error" and e.get("ctx")
        ]
        if literals:
            detail += f" (or {', '.join(literals)})"
        msg = f"{dotted}: {detail}" if loc or not kind.startswith("value_error") else detail  # a rule across sections
        if kind not in ("value_error",) and not isinstance(got, (dict, list)) and got is not None:
            msg += f" (got {got!r})"
    return msg, more


_MEMBER_TAGS = {"int", "float", "str", "bool", "none", "list", "tuple", "dict"}


def _strip_member_tags(loc: tuple) -> tuple:
    """`loc` without trailing union-member tags: pydantic's type names, e.g. "constrained-int",
    "literal['auto']", "function-after[...]" (never a key: keys are identifiers)."""
    while loc and isinstance(loc[-1], str) and (not loc[-1].isidentifier() or loc[-1] in _MEMBER_TAGS):
        loc = loc[:-1]
    return loc


def _walk(root: type[BaseModel], loc: tuple) -> Any:
    """The config class (or union of classes) at `loc`; union tags in `loc` pick a member."""
    cls: Any = root
    for part in loc:
        if isinstance(cls, tuple):
            tagged = [c for c in cls if _tag(c) == part]
            if tagged:
                cls = tagged[0]
                continue
            cls = next((c for c in cls if str(part) in c.model_fields), cls[0])
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or isinstance(part, int):
            return None
        cls = _field_type(cls, str(part))
    return cls


def _fields_of(cls: Any) -> list[str]:
    if isinstance(cls, tuple):
        return sorted({f for c in cls for f in c.model_fields})
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return []


def _clean_loc(loc: tuple, root: type[BaseModel]) -> tuple:
    """Drop pydantic's union tags (e.g. features.text.tokenizer -> features.tokenizer)."""
    return tuple(
        part for i, part in enumerate(loc)
        if not (isinstance(_walk(root, loc[:i]), tuple) and any(_tag(c) == part for c in _walk(root, loc[:i])))
    )  # fmt: skip


def _field_type(cls: type[BaseModel], name: str) -> Any:
    """The BaseModel class (or tuple of classes, for a union) a field holds, else None."""
    field = cls.model_fields.get(name)
    if field is None:
        return None
    models = [a for a in _flatten(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if not models:
        return None
    return models[0] if len(models) == 1 else tuple(models)


def _flatten(tp: Any) -> list:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [x for a in typing.get_args(tp) for x in _flatten(a)]
    return [tp]


def _tag(cls: type[BaseModel]) -> Any:
    return getattr(cls, "tag", None)
