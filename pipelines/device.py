"""--device auto|cpu|cuda|cuda:N -> torch.device, with a clear error when CUDA is missing."""

from __future__ import annotations

import re

from attn.errors import ConfigError


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
