"""The run directory: its file names, a fresh directory per run, the runs/latest link, and the
copy of the log in train.log.

runs/<recipe>-<timestamp>/
    model.attn      the artifact (best validation epoch), all `attn predict` needs
    last.ckpt       resume state after the last finished epoch (optimizer, RNG, ...)
    recipe.yaml     the resolved recipe
    history.jsonl   one line of metrics per epoch
    metrics.json    final test metrics
    train.log       the log
    members.json    train.ensemble only: the members finished so far (member-<i>/ are their runs)
runs/latest -> the newest run
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path

from attn.errors import ConfigError

from .fsutil import make_dirs

log = logging.getLogger("attn")

MODEL = "model.attn"
CHECKPOINT = "last.ckpt"
RECIPE = "recipe.yaml"
HISTORY = "history.jsonl"
METRICS = "metrics.json"
LOG = "train.log"
MEMBERS = "members.json"


def new_run_dir(recipe_path: str | None, out: str | None) -> Path:
    """A fresh run directory; two runs started in the same second never share one."""
    if out:
        p = Path(out)
        if p.exists() and any(p.iterdir()):
            raise ConfigError(f"--out {out}: directory exists and is not empty (use --resume {out} to continue it)")
        make_dirs(p)
        return p
    stem = Path(recipe_path).stem if recipe_path else "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    make_dirs("runs")
    for i in range(1000):
        p = Path("runs") / (f"{stem}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            p.mkdir()  # atomic: fails if another run took the name
            return p
        except FileExistsError:
            continue
        except OSError as e:
            make_dirs(p)  # raises an OutputError naming the problem
            raise AssertionError from e
    raise ConfigError("runs/: could not find a free run directory name")


def point_latest(run_dir: Path) -> None:
    """Point <run_dir's parent>/latest at `run_dir` (atomically: a rename over the old link)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError as e:
        log.warning("could not update %s (%s)", link, e.strerror or e)


class RunLog:
    """Copy the 'attn' log into the run's train.log while the run is active."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger = logging.getLogger("attn")
        self.old_level = self.logger.level

    def __enter__(self):
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
            self.handler.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        self.handler.close()
