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


_LAST: tuple | None = None  # the splits checked last
PREFIX_BYTES = 4096  # read of each file to find candidate copies; only candidates are read whole


def warn_cross_split_copies(splits: dict[str, list[Item]], modality: str) -> None:
    """A warning when val or test holds copies of training examples: the same text (case and
    spacing aside), or an audio file with the same bytes under another name. Their scores say
    how well the model remembers, not how it does on new data (a test file made from the head of
    train scored 1.0 without a word). Nothing is dropped: a repeated example can be real."""
    global _LAST
    held = [it for s in ("val", "test") for it in splits.get(s, [])]
    if not held or not splits.get("train"):
        return
    listed = (modality, *(tuple(it.source for it in splits.get(s, [])) for s in ("train", "val", "test")))
    if listed == _LAST:  # the same splits again (each `attn tune` trial prepares its data): read and said once
        return
    _LAST = listed
    every = [it.source for s in ("train", "val", "test") for it in splits.get(s, [])]
    keys = dict(zip(every, map(_text_key, every), strict=True)) if modality == "text" else _file_keys(every)
    train = {keys[it.source] for it in splits["train"]} - {None}
    notes = []
    for split in ("val", "test"):
        same = [it for it in splits.get(split, []) if keys[it.source] in train]
        if same:
            first = same[0].where or same[0].source
            notes.append(f"{len(same)} of {len(splits[split])} {split} examples (e.g. {_tail(first)})")
    if notes:
        what = "texts" if modality == "text" else "files (the same bytes)"
        log.warning("data: %s are copies of training %s: their scores say how well the model remembers, not how it "
                    "does on new data", "; ".join(notes), what)  # fmt: skip


def _tail(where: str, n: int = 80) -> str:
    """A long path or text cut to its last `n` characters: a path's end names the file (its first
    80 characters were often the temporary folder, and the name was cut off)."""
    return where if len(where) <= n else "…" + where[-(n - 1) :]


def _text_key(text: str) -> str | None:
    return " ".join(text.split()).casefold() or None


def _file_keys(paths: list[str]) -> dict[str, tuple | None]:
    """{path: (size, hash of its first PREFIX_BYTES, hash of the whole file or None)}: a file is
    read whole only when its size and first bytes match another's; None for a file that cannot
    be read (its decoding reports it)."""
    import hashlib

    heads: dict[str, tuple[int, bytes] | None] = {}
    for path in dict.fromkeys(paths):
        try:
            with open(path, "rb") as f:
                heads[path] = (os.fstat(f.fileno()).st_size, hashlib.sha1(f.read(PREFIX_BYTES)).digest())
        except OSError:
            heads[path] = None
    shared: dict[tuple[int, bytes], int] = {}
    for head in heads.values():
        if head is not None:
            shared[head] = shared.get(head, 0) + 1
    keys: dict[str, tuple | None] = {}
    for path, head in heads.items():
        if head is None or shared[head] == 1:
            keys[path] = None if head is None else (*head, None)
            continue
        try:
            digest = hashlib.sha1()
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            keys[path] = (*head, digest.digest())
        except OSError:
            keys[path] = None
    return keys
