"""Looking inside a model without predicting: what its file holds (`attn info`), the features it
computes for a file (`attn features`) and the tokens it sees in a text (`attn tokenize`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .model import torch_device
from .runs import override_list

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from attn.pipelines.ship.tokenize import Tokenized


def info(model: str | os.PathLike | None = None) -> dict[str, Any]:
    """What `attn info --format json` shows of a model file or run directory (None: $ATTN_MODEL,
    else runs/latest), read from its header alone (no torch; the checksum is still verified): an
    ONNX file from `attn export`, its metadata."""
    from attn.pipelines.store import artifact

    return artifact.read_info(None if model is None else os.fspath(model))


def export_features(
    file: str | os.PathLike,
    out: str | os.PathLike,
    model: str | os.PathLike | None = None,
    recipe: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    device: Any = "cpu",
) -> tuple[tuple[int, ...], list[int]]:
    """Write to `out` (.npy) the feature tensor a model computes for an audio file: float32
    (windows, bins, frames), exactly what the network sees; `recipe` (with `overrides`) instead
    of a model: its features section. Returns the array's shape and each window's valid frame
    count (frames past it are padding the model ignores)."""
    from attn.pipelines.ship.features_export import export_features as export

    shape, frames = export(os.fspath(file), os.fspath(out), model=None if model is None else os.fspath(model),
                           recipe=None if recipe is None else os.fspath(recipe), overrides=override_list(overrides),
                           device=torch_device(device))  # fmt: skip
    return tuple(shape), list(frames)


def tokenize(
    texts: Iterable,
    model: str | os.PathLike | None = None,
    recipe: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
) -> Tokenized:
    """The tokens a text model sees, exactly: `texts` are strings or `text_inputs`/`argument_texts`
    items; the tokenizer is a model's (None: $ATTN_MODEL, else runs/latest) or, given `recipe`
    (with `overrides`), built from its training split as `attn train` would build it. Returns
    `.max_len`, `.class_token` and `.records`, one per text, as `attn tokenize` prints them."""
    from attn.pipelines.infer.predict_text import given_text
    from attn.pipelines.ship.tokenize import Tokenized, tokenize, tokenizer_for

    tok, features, cls = tokenizer_for(model=None if model is None else os.fspath(model),
                                       recipe=None if recipe is None else os.fspath(recipe),
                                       overrides=override_list(overrides))  # fmt: skip
    items = (given_text(t, f"text {i}") if isinstance(t, str) else t for i, t in enumerate(texts, 1))
    max_len = features.tokenizer.max_len
    return Tokenized(max_len, cls, tokenize(items, tok, max_len, cls))


def label_list(labels) -> str:
    """Labels joined by ", " for people to read, a label holding a comma (or outer spaces) quoted."""
    from attn.pipelines.data.labelsets import label_list as joined

    return joined(labels)
