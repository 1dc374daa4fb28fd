"""Each audio file of a data section once (`sources.list_items` calls it on what it listed)."""

from __future__ import annotations

import logging
import os

from attn.errors import InputError

from .items import Item

log = logging.getLogger("attn")


def one_row_per_file(items: list[Item]) -> list[Item]:
    """Each audio file once. A file listed twice alike (a repeated manifest row, the same file by
    a relative and an absolute path, a folder linked into its own class) is kept once, with a
    warning: copies would otherwise land in train and test both and inflate the scores. Listed
    with two labels, splits or folds (a folder linked into another class), it is an error:
    nothing says which one holds."""
    first: dict[str, Item] = {}
    kept, dropped = [], []
    for it in items:
        key = os.path.realpath(it.source)
        seen = first.setdefault(key, it)
        if seen is it:
            kept.append(it)
            continue
        if (seen.label, seen.labels, seen.split, seen.fold) != (it.label, it.labels, it.split, it.fold):
            what = "labels" if (seen.label, seen.labels) != (it.label, it.labels) else "splits or folds"
            raise InputError(f"{it.where or it.source}: the same file as {seen.where or seen.source}, with other "
                             f"{what} ({_facts(seen)} vs {_facts(it)}); list each file once")  # fmt: skip
        dropped.append((it, seen))
    if dropped:
        it, seen = dropped[0]
        log.warning("%d file(s) listed more than once were kept once (e.g. %s, the same file as %s)", len(dropped),
                    it.where or it.source, seen.where or seen.source)  # fmt: skip
    return kept


def _facts(it: Item) -> str:
    parts = [f"label {it.label!r}"] + [f"{k} {v!r}" for k, v in (("split", it.split), ("fold", it.fold)) if v]
    return ", ".join(parts)
