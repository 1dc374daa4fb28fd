"""--device auto|cpu|cuda|cuda:N -> torch.device, with a clear error when CUDA is missing."""

from __future__ import annotations

import os
import re

from attn.errors import ConfigError


def env_threads() -> int | None:
    """$ATTN_THREADS: a whole number of threads, 1 or more (unset or empty: None)."""
    raw = os.environ.get("ATTN_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"ATTN_THREADS={raw!r}: expected a whole number of threads, 1 or more")
    return n


def apply_env_threads() -> None:
    """The Python API honours $ATTN_THREADS as the CLI does. Unset, it leaves torch's threads as
    the calling program has them (a library does not retune its host process by the load)."""
    n = env_threads()
    if n is not None:
        import torch

        torch.set_num_threads(n)


def resolve_device(spec: str | None = "auto"):
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not m:
        raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"--device {spec}: CUDA is not available ({why}); use --device cpu")
    index = int(m.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"--device {spec}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)
