"""A frozen encoder's hidden states on disk, for the next run over the same texts.

A frozen encoder gives an input the same states every time, so a run computes each training
and validation text's states once (in memory, `EncoderFrontend.enable_cache`) and keeps them in
<root>/<checkpoint sha256>/ as safetensors files (one per run that added states), keyed by a
digest of the token ids. The next run with the same checkpoint (another head, other training
settings) starts with them; another checkpoint, tokenizer or max_len gives other keys, so
nothing stale is ever read. root: data.cache_dir/encoder-states, else $ATTN_CACHE/encoder-states,
else ~/.cache/attn/encoder-states. Delete the folder to reclaim the space.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger("attn")


def cache_folder(recipe) -> Path | None:
    """Where a recipe's frozen text encoder keeps its states (None: not a frozen text encoder)."""
    enc = getattr(recipe.features, "encoder", None)
    if enc is None or not enc.frozen or not enc.sha256 or recipe.modality != "text":
        return None
    root = recipe.data.cache_dir or os.environ.get("ATTN_CACHE") or "~/.cache/attn"
    return Path(root).expanduser() / "encoder-states" / enc.sha256


def load_states(frontend, folder: Path) -> int:
    """Preload `frontend` with the states in `folder`; returns how many."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    n = 0
    for f in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            states = load_file(str(f))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            log.warning("encoder cache: skipped %s (%s)", f, str(e)[:120])
            continue
        frontend.preload(states)
        n += len(states)
    if n:
        log.info("encoder cache: %d texts' states from %s", n, folder)
    return n


def save_states(frontend, folder: Path) -> int:
    """Add the states `frontend` computed in this run to `folder` (one new file, written whole
    under a temporary name, then renamed); a folder that cannot be written is a warning."""
    from safetensors.torch import save_file

    states = {k: v.detach().cpu().contiguous() for k, v in frontend.new_states().items()}
    if not states:
        return 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = folder / f"{uuid.uuid4().hex}.safetensors"
        tmp = name.with_suffix(".tmp")
        save_file(states, str(tmp))
        os.replace(tmp, name)
    except OSError as e:
        log.warning("encoder cache: not written to %s (%s)", folder, e.strerror or e)
        return 0
    log.info("encoder cache: %d texts' states added to %s", len(states), folder)
    return len(states)
