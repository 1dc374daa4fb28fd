"""The labelled example record every data source lists (`sources.list_items`)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


def clean_label(text: str) -> str:
    """A label as every source gives it: stripped, and NFC-normalised, so `café` typed on macOS
    (e + combining accent, as its file names are) and elsewhere is one class, not two that look
    alike. Folder names, manifest cells and label-set members all pass here. A folder name that
    is not UTF-8 (its bytes kept as lone surrogates by os.fsdecode) reads with U+FFFD where they
    were: a lone surrogate is no text (report.html's figures failed on one)."""
    if any("\ud800" <= c <= "\udfff" for c in text):
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate of another kind (a JSON "\\ud83d")
            raw = text.encode("utf-8", "surrogatepass")
        text = raw.decode("utf-8", "replace")
    return unicodedata.normalize("NFC", text.strip())


def label_index(labels) -> dict[str, int]:
    """{label: index} for looking data labels up in a model's labels: a model trained before
    labels were normalised may hold a decomposed form, which data read now never has; one trained
    before a JSON 1.0 read as "1" holds "1.0", which is found by "1" too (when no label is "1")."""
    index = {clean_label(lab): i for i, lab in enumerate(labels)}
    for lab, i in list(index.items()):
        whole = whole_number(lab)
        if whole is not None:
            index.setdefault(whole, i)
    return index


def whole_number(label: str) -> str | None:
    """ "1" for "1.0" (a float that is a whole number, as JSON writes it), else None."""
    if "." not in label:
        return None
    try:
        value = float(label)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else None


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
