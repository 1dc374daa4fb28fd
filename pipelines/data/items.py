"""The labelled example record every data source lists (`sources.list_items`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One labelled example before loading. `source` is a file path, a synthetic clip name, or
    (for text) the text itself; `where` says where it came from, for error messages."""

    source: str
    label: str | None
    split: str | None = None
    where: str = ""
    fold: str | None = None  # data.fold_column's value (cross-validation)
    labels: tuple[str, ...] | None = None  # data.multi_label: the label set (`label` is it joined by ";")
