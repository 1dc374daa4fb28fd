"""A frozen encoder's hidden states on disk, for the next run over the same texts.

A frozen encoder gives an input the same states every time, so a run computes each training
and validation text's states once (in memory, `EncoderFrontend.enable_cache`) and keeps them in
<root>/<checkpoint sha256>-<config digest>/ as safetensors files (one per run that added
states), keyed by a digest of the token ids. The next run with the same checkpoint (another
head, other training settings) starts with them; other weights, another config.json (the same
weights read by 3 of their 6 layers give other states), tokenizer or max_len give other keys, so
nothing stale is ever read; a file that cannot be read or holds states of another shape is
removed. root: data.cache_dir/encoder-states, else $ATTN_CACHE/encoder-states,
else ~/.cache/attn/encoder-states. Delete the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
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
    config = hashlib.sha256(json.dumps(enc.config or {}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root).expanduser() / "encoder-states" / f"{enc.sha256}-{config}"


def state_keys(sets) -> set[str]:
    """The cache keys of the texts in `sets` (WindowSets of token ids, one window of each text's
    first `frame` ids), as `EncoderFrontend` keys them (`models.bert.state_key`)."""
    from attn.models.bert import state_key

    return {state_key(c[: max(1, min(len(c), s.frame))]) for s in sets for c in s.clips}


def load_states(frontend, folder: Path, wanted: set[str] | None = None) -> int:
    """Preload `frontend` with the states in `folder` (only those of `wanted` keys: a run reads
    its own texts' states, not every run's before it); returns how many."""
    from safetensors import SafetensorError, safe_open

    n = 0
    for f in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            with safe_open(str(f), "pt") as st:
                states = {k: st.get_tensor(k) for k in st.keys() if wanted is None or k in wanted}
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            _drop(f, str(e)[:120])
            continue
        odd = next((v for v in states.values() if v.ndim != 2 or v.shape[1] != frontend.out_dim), None)
        if odd is not None:  # (T, H) states of this encoder only
            _drop(f, f"states of shape {tuple(odd.shape)}, not (tokens, {frontend.out_dim})")
            continue
        frontend.preload(states)
        n += len(states)
    if n:
        log.info("encoder cache: %d texts' states from %s", n, folder)
    return n


def _drop(f: Path, why: str) -> None:
    """A damaged cache file is removed (it would be skipped again on every run)."""
    try:
        f.unlink()
        log.warning("encoder cache: removed %s (%s)", f, why)
    except OSError:
        log.warning("encoder cache: skipped %s (%s)", f, why)


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
