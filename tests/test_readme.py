"""The README's Python API example runs as written (from a checkout's root: it trains the
quick-start recipe, shortened, and uses what the run wrote)."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    os.symlink(REPO / "recipes", tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "'label'" in out and "'error'" in out and (tmp_path / "runs" / "latest" / "model.attn").exists()
