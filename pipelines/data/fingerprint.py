"""What a run's data is, as one short hash: a tune's trials must share it, a resumed run must
find it unchanged (attn train --resume continues exactly, or not at all), and `attn evaluate`
must know whether the split it scores is still the one the model was scored on."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

CONTENTS = "v2-"  # the prefix of a fingerprint that also reads the audio files (earlier ones: names only)
SAMPLE = 4096  # bytes read at each end of a file: a file edited or swapped under the same name


def data_fingerprint(data_section: dict[str, Any], prepared, modality: str, contents: bool = False,
                     splits: dict[str, str] | None = None) -> str:  # fmt: skip
    """The data trials train and are scored on: the recipe's data settings and every listed
    example (split, label, and its text or its file's name). Trials on other data are not
    comparable, which is also why tune never searches `data.*`. Where the data lives is left
    out (folders, manifest paths): hosts sharing a study may mount it in different places.

    `contents` (prefix "v2-"): the settings and the splits' `split_fingerprints` (`splits` when
    the caller has them), so an audio file's size and its first and last 4 KB count too: a file
    re-recorded or swapped under its old name changes it (a resumed run trained on with 80 of 160
    clips relabelled that way). Reading the ends, not the whole file, keeps it quick on large sets."""
    settings = {k: v for k, v in data_section.items() if k not in _WHERE}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    if contents:
        h.update(json.dumps(splits or split_fingerprints(prepared.splits, modality), sort_keys=True).encode())
        return CONTENTS + h.hexdigest()[:16]
    for split, items in sorted(prepared.splits.items()):  # names only: the checkpoints of before "v2-"
        for it in items:
            h.update(json.dumps([split, *_example(it, modality, None)]).encode())
    return h.hexdigest()[:16]


def split_fingerprints(splits: dict[str, list], modality: str) -> dict[str, str]:
    """One contents-aware fingerprint per split, "COUNT:HASH" ({"train": ..., "val": ...,
    "test": ...}), kept in the model file: `attn evaluate` recomputes the split it scores from
    the stored recipe and says when it is not the one the model was held out from (20 FSDD
    clips added to a manifest carved into splits put 15 training clips in the test split)."""
    files = _FileSums() if modality == "audio" else None
    out = {}
    for split, items in sorted(splits.items()):
        h = hashlib.sha256()
        for it in items:
            h.update(json.dumps(_example(it, modality, files)).encode())
        out[split] = f"{len(items)}:{h.hexdigest()[:16]}"
    return out


def _example(it, modality: str, files: _FileSums | None) -> list[Any]:
    if modality != "audio":
        return [it.label, it.source]
    return [it.label, os.path.basename(it.source), *([] if files is None else [files(it.source)])]


class _FileSums:
    """A file's size and a hash of its ends, once per file (a long recording lists several items)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.seen:
            self.seen[path] = _ends(path)
        return self.seen[path]


def _ends(path: str) -> str:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(SAMPLE)
            if size > 2 * SAMPLE:
                f.seek(size - SAMPLE)
            tail = f.read(SAMPLE)
    except OSError:  # not a file (generated data), or unreadable: the data's own checks say so
        return ""
    return f"{size}:" + hashlib.sha256(head + tail).hexdigest()[:16]


_WHERE = ("root", "manifest", "train", "val", "test", "cache_dir")  # data keys naming places, not data
