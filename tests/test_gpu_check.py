"""`python -m bench.gpu_check` without CUDA: one JSON line saying it skipped, exit 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the check would run for minutes")
def test_gpu_check_says_it_skipped_without_cuda():
    r = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"gpu_check": "skipped", "reason": "no CUDA device", "torch": torch.__version__}
