"""The search space of `attn tune`: the recipe's `tune:` section, or a default per model family.

A `tune:` section maps dotted recipe keys to distributions, one of

    train.lr:            {log_uniform: [1.0e-4, 1.0e-2]}
    model.dropout:       {uniform: [0.0, 0.5]}        # optional step: 0.05
    model.layers:        {int: [1, 4]}                # optional step: 2, log: true
    features.tokenizer.level: {choice: [word, subword]}

It is checked when the recipe loads, before anything trains: an unknown distribution or option,
bad bounds, a key the recipe does not have (or one under `data` or `train.monitor`, which would
change what trials are scored on), or a bound or choice the key itself would refuse is a recipe
error naming `tune.<key>`.

Without a `tune:` section, `default_space(recipe)` searches the learning rate (log-uniform from a
tenth to three times the recipe's), the family's own width/depth/dropout keys (each family's
`Backbone.tune_space`), and for audio the SpecAugment mask widths (spectrogram features) or the
random gain (waveform), for text the word dropout and the tokenizer's vocabulary limit.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ValidationError, model_serializer, model_validator

from attn.schema import NestedError, PosFloat, Strict, describe_validation_error

from . import keys

KINDS = ("log_uniform", "uniform", "int", "choice")
# Keys a trial may not change: they decide the validation split or the score itself.
FROZEN = ("data", "train.monitor", "train.folds", "train.folds_final", "train.ensemble")


class Distribution(Strict):
    """One key's distribution: `kind` with [low, high] (and `step`, `log` for int), or `choices`."""

    kind: Literal["log_uniform", "uniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    step: PosFloat | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> Distribution:
        if self.kind == "choice":
            if len(self.choices) < 2:
                raise ValueError("choice needs at least two values")
            return self
        lo, hi = self.low, self.high
        assert lo is not None and hi is not None
        if not lo < hi:
            raise ValueError(f"{self.kind} needs low < high (got [{lo:g}, {hi:g}])")
        if self.kind == "log_uniform" and lo <= 0:
            raise ValueError(f"log_uniform needs low > 0 (got {lo:g})")
        if self.kind == "int":
            if lo != int(lo) or hi != int(hi) or (self.step is not None and self.step != int(self.step)):
                raise ValueError(f"int needs whole numbers (got [{lo:g}, {hi:g}])")
            if self.log and (lo < 1 or self.step not in (None, 1)):
                raise ValueError("int with log: true needs low >= 1 and no step")
        return self

    def candidates(self) -> list[Any]:
        """The values to check against the recipe before training: both bounds, or every choice."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def suggest(self, trial, name: str) -> Any:
        """Draw the value from an Optuna trial. Choices that are not plain scalars (a list of
        channels) are drawn as their JSON text, which Optuna stores and compares as it is."""
        if self.kind == "choice":
            if all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
                return trial.suggest_categorical(name, list(self.choices))
            return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in self.choices]))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log_uniform", step=self.step)  # type: ignore[arg-type]

    def as_param(self, value: Any) -> Any:
        """`value` as Optuna holds it for this key (non-scalar choices as JSON text)."""
        if self.kind == "choice" and not all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices):
            return json.dumps(value)
        return value

    def to_yaml(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        lo, hi = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)  # type: ignore[arg-type]
        out: dict[str, Any] = {self.kind: [lo, hi]}
        if self.step is not None:
            out["step"] = int(self.step) if self.kind == "int" else self.step
        if self.log:
            out["log"] = True
        return out


# The options each kind takes besides its own key.
OPTIONS = {"log_uniform": (), "uniform": ("step",), "int": ("step", "log"), "choice": ()}


def parse_distribution(spec: Any) -> Distribution:
    """`{log_uniform: [lo, hi]}` etc. -> Distribution; raises ValueError with a one-line reason."""
    if not isinstance(spec, dict):
        raise ValueError(f"expected a distribution, one of {{{': ..., '.join(KINDS)}: ...}} (got {spec!r})")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        unknown = [k for k in spec if k not in KINDS and k not in ("step", "log")]
        if unknown:
            near = difflib.get_close_matches(str(unknown[0]), KINDS, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else f" (one of {', '.join(KINDS)})"
            raise ValueError(f"unknown distribution {unknown[0]!r}{hint}")
        raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {', '.join(map(str, spec)) or 'none'})")
    kind = kinds[0]
    extra = [k for k in spec if k != kind and k not in OPTIONS[kind]]
    if extra:
        valid = ", ".join(OPTIONS[kind]) or "none"
        raise ValueError(f"unknown option {extra[0]!r} for {kind} (options: {valid})")
    value = spec[kind]
    fields: dict[str, Any] = {"kind": kind, **{k: spec[k] for k in OPTIONS[kind] if k in spec}}
    if kind == "choice":
        if not isinstance(value, list):
            raise ValueError(f"choice takes a list of values (got {value!r})")
        fields["choices"] = tuple(value)
    else:
        if not (isinstance(value, list) and len(value) == 2):
            raise ValueError(f"{kind} takes [low, high] (got {value!r})")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise ValueError(f"{kind} bounds must be numbers (got {value!r})")
        fields["low"], fields["high"] = value
    try:
        return Distribution.model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        if not err["loc"]:  # the bounds check
            raise ValueError(err["msg"].removeprefix("Value error, ")) from None
        raise ValueError(describe_validation_error(e, Distribution)) from None


class TuneSpace(Strict):
    """The recipe's `tune:` section: dotted recipe key -> Distribution (written flat, as above)."""

    params: dict[str, Distribution]

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) == {"params"} and isinstance(data["params"], dict):
            data = data["params"]
            if all(isinstance(v, Distribution) for v in data.values()):
                return {"params": data}
        if not isinstance(data, dict) or not data:
            raise NestedError(key="", message="expected a mapping of dotted recipe keys to distributions, "
                                              "e.g. train.lr: {log_uniform: [1.0e-4, 1.0e-2]}")  # fmt: skip
        params = {}
        for key, spec in data.items():
            if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
                raise NestedError(key=str(key), message="expected a dotted recipe key such as train.lr")
            try:
                params[key] = spec if isinstance(spec, Distribution) else parse_distribution(spec)
            except ValueError as e:
                raise NestedError(key=key, message=str(e)) from None
        return {"params": params}

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        return {k: d.to_yaml() for k, d in self.params.items()}

    def suggest(self, trial) -> dict[str, Any]:
        """One value per key, drawn from an Optuna trial."""
        return {k: d.suggest(trial, k) for k, d in self.params.items()}


def check_space(space: TuneSpace, recipe: dict[str, Any], problem: Callable[[dict[str, Any]], str | None]) -> None:
    """Every key exists in `recipe` (plain data, its model section flat) and is tunable, and each
    bound or choice is a value the recipe accepts there (`problem(raw)`: what is wrong with a
    raw recipe, None when nothing). Raises NestedError naming the key."""
    for key, dist in space.params.items():
        if any(key == f or key.startswith(f + ".") for f in FROZEN):
            raise NestedError(key=key, message="cannot be tuned: it changes the validation split, the score "
                                               "that trials are compared on, or that a trial is one model")  # fmt: skip
        missing = keys.missing(recipe, key)
        if missing:
            raise NestedError(key=key, message=missing)
        for value in dist.candidates():
            why = problem(keys.with_values(recipe, {key: value}))
            if why is not None:
                raise NestedError(key=key, message=f"{value!r} is not a valid value here ({why})")


# -- the default space ---------------------------------------------------------------------------


def default_space(recipe) -> TuneSpace:
    """The documented default search space for a `Recipe` without a `tune:` section."""
    lr = recipe.train.lr
    space: dict[str, Any] = {"train.lr": {"log_uniform": [_round(lr / 10), _round(lr * 3)]}}
    space.update({f"model.{k}": v for k, v in recipe.model.family.tune_space(recipe.model.config).items()})
    f = recipe.features
    if recipe.modality == "text" and f.encoder is not None:  # a pretrained encoder: how fast it adapts
        scale = recipe.train.frontend_lr_scale
        space["train.frontend_lr_scale"] = {"log_uniform": [_round(scale / 3), _round(min(1.0, scale * 3))]}
    elif recipe.modality == "text":
        space["features.word_dropout"] = {"uniform": [0.0, 0.3]}
        tok = f.tokenizer
        if tok.level == "subword" or tok.unknown_words == "subword":
            space["features.tokenizer.vocab_size"] = {"choice": sorted({max(8, tok.vocab_size // 2), tok.vocab_size,
                                                                        tok.vocab_size * 2})}  # fmt: skip
        else:
            space["features.tokenizer.min_freq"] = {"int": [1, 3]}
    elif f.kind == "waveform":
        space["train.augment.gain_db"] = {"uniform": [0.0, 6.0]}
    else:
        # attn tune resolves `auto` and millisecond values first; a caller that did not gets
        # widths for a typical window (64 bins, 100 frames) rather than an error.
        if f.resolved:
            bins, frames = f.bins, max(1, f.window_steps)
        else:
            bins, frames = 64, 100
        space["train.augment.freq_mask"] = {"int": [0, max(1, bins // 5)]}
        space["train.augment.time_mask"] = {"int": [0, max(1, frames // 5)]}
    plain = recipe.model_dump(mode="json")
    return TuneSpace.model_validate({k: _widened(d, keys.get(plain, k)) for k, d in space.items()})


def _widened(spec: dict[str, Any], value: Any) -> dict[str, Any]:
    """A default range stretched to include the recipe's own value, so that the recipe itself is
    a point of its default space (and can be its first trial)."""
    kind = next(k for k in KINDS if k in spec)
    if kind == "choice":
        return spec if value in spec["choice"] else {"choice": [value, *spec["choice"]]}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return spec
    lo, hi = spec[kind]
    return {**spec, kind: [min(lo, value), max(hi, value)]}


def _round(x: float) -> float:
    return float(f"{x:.3g}")
