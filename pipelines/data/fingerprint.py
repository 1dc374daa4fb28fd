"""What a run's data is, as one short hash: a tune's trials must share it, and a resumed run
must find it unchanged (attn train --resume continues exactly, or not at all)."""

from __future__ import annotations

import json
import os
from typing import Any


def data_fingerprint(data_section: dict[str, Any], prepared, modality: str) -> str:
    """The data trials train and are scored on: the recipe's data settings and every listed
    example (split, label, and its text or its file's name). Trials on other data are not
    comparable, which is also why tune never searches `data.*`. Where the data lives is left
    out (folders, manifest paths): hosts sharing a study may mount it in different places."""
    import hashlib

    settings = {k: v for k, v in data_section.items() if k not in _WHERE}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for split, items in sorted(prepared.splits.items()):
        for it in items:
            source = os.path.basename(it.source) if modality == "audio" else it.source
            h.update(json.dumps([split, it.label, source]).encode())
    return h.hexdigest()[:16]


_WHERE = ("root", "manifest", "train", "val", "test", "cache_dir")  # data keys naming places, not data
