"""The run directory: its file names, a fresh directory per run, the runs/latest link, and the
copy of the log in train.log.

runs/<recipe>-<timestamp>/
    model.attn      the artifact (best validation epoch), all `attn predict` needs
    last.ckpt       resume state after the last saved epoch (optimizer, RNG, ...)
    recipe.yaml     the resolved recipe
    history.jsonl   one line of metrics per epoch
    metrics.json    final test metrics
    train.log       the log
    report.html     the report (attn report RUN writes it again)
    members.json    train.ensemble only: the members finished so far (member-<i>/ are their runs)
runs/latest -> the newest run, wherever --out put it
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from attn.errors import ConfigError, OutputError

from ..fsutil import atomic_write_text, make_dirs, remove_tree

log = logging.getLogger("attn")

MODEL = "model.attn"
CHECKPOINT = "last.ckpt"
RECIPE = "recipe.yaml"
HISTORY = "history.jsonl"
METRICS = "metrics.json"
LOG = "train.log"
MEMBERS = "members.json"
REPORT = "report.html"
TENSORBOARD = "tensorboard"  # train.tensorboard's event files, unless --tensorboard names a folder
LOCK = ".attn-run.lock"  # "pid host" of the process writing into the run directory, while it runs


def member_dir(run_dir: Path, member: int) -> Path:
    """The run of ensemble member `member` (1-based) inside the ensemble's run directory."""
    return run_dir / f"member-{member}"


def fold_dir(run_dir: Path, fold: str) -> Path:
    """The run of cross-validation fold `fold` inside the run directory."""
    return run_dir / f"fold-{fold}"


def start_run(run_dir: Path, recipe=None, *, replace: bool = False) -> Path:
    """The one way a run directory is set up (train, ensemble members, tune trials, the tune's
    refit): make it (`replace`: remove what a previous run left there first) and, given the
    resolved recipe, write it as recipe.yaml. Failures are OutputErrors naming the path."""
    if replace:
        remove_tree(run_dir)
    make_dirs(run_dir)
    if recipe is not None:
        write_recipe(run_dir, recipe)
    return run_dir


def write_recipe(run_dir: Path, recipe) -> None:
    """run_dir/recipe.yaml: the resolved recipe the run trains (a Recipe)."""
    from ..recipe.load import recipe_to_yaml

    atomic_write_text(run_dir / RECIPE, recipe_to_yaml(recipe))


def drop_checkpoint(run_dir: Path) -> None:
    """A finished run needs no resume state: remove last.ckpt (a failure to do so is harmless)."""
    try:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    except OSError:
        pass


def new_run_dir(recipe_path: str | None, out: str | None) -> Path:
    """A fresh run directory; two runs started in the same second never share one."""
    if out:
        p = Path(out)
        if (p.exists() or p.is_symlink()) and not p.is_dir():
            raise OutputError(f"--out {out}: cannot write (not a directory)")
        if p.exists() and any(p.iterdir()):
            if (holder := lock_holder(p)) is not None:
                raise OutputError(f"--out {out}: cannot write ({_held_by(p, holder)})")
            if not resumable(p):
                raise ConfigError(f"--out {out}: directory exists and is not empty, and holds nothing to resume (no "
                                  "checkpoint or model): empty it or choose another --out")  # fmt: skip
            raise ConfigError(f"--out {out}: directory exists and is not empty (use --resume {out} to continue it)")
        make_dirs(p)
        claim(p, f"--out {out}")
        return p
    stem = Path(recipe_path).stem if recipe_path else "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    make_dirs("runs")
    for i in range(1000):
        p = Path("runs") / (f"{stem}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            p.mkdir()  # atomic: fails if another run took the name
            claim(p, str(p))
            return p
        except FileExistsError:
            continue
        except OSError as e:
            make_dirs(p)  # raises an OutputError naming the problem
            raise AssertionError from e
    raise ConfigError("runs/: could not find a free run directory name")


def claim(folder: Path, what: str) -> None:
    """Take `folder` for this process: create its LOCK (O_EXCL: atomic, so of two runs started
    together exactly one succeeds; two runs in one folder would interleave their logs and
    files). A lock whose process is gone (killed) is taken over. `release` ends the claim."""
    for _ in range(2):
        try:
            fd = os.open(folder / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(folder)
            if holder is not None:
                raise OutputError(f"{what}: cannot write ({_held_by(folder, holder)})") from None
            release(folder)  # stale: its run was killed
            continue
        except OSError as e:
            raise OutputError(f"{what}: cannot write ({e.strerror or e})") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()} {socket.gethostname()} {_started(os.getpid()) or 0}\n")
        except OSError as e:  # a full disk: no empty lock may stay behind to block the folder
            release(folder)
            raise OutputError(f"{what}: cannot write ({e.strerror or e})") from None
        return
    raise OutputError(f"{what}: cannot write (another run is taking it at the same time)")


def _held_by(folder: Path, holder: tuple[int, str]) -> str:
    pid, host = holder
    if pid < 0:
        return "another run is taking it this instant"
    where = "" if host == socket.gethostname() else f" on host {host}"
    return (f"another run, process {pid}{where}, is writing into it; if that run is gone, remove "
            f"{folder / LOCK}")  # fmt: skip


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22), None where
    there is no /proc. With the pid it names one process: a pid is reused, a start time is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


STALE_EMPTY_SECONDS = 10.0  # an empty lock older than this was left by a writer that failed


def lock_holder(folder: Path) -> tuple[int, str] | None:
    """(pid, host) of the run holding `folder`'s LOCK, or None when nothing holds it: the lock
    is absent, or names a process that is gone, or one that has since been replaced by another
    with the same pid (a run killed in a container comes back as pid 1 again).
    Another host's lock counts as held (the message says which file to remove if that run is
    gone); an empty lock too, for a moment: its writer may be about to fill it."""
    path = folder / LOCK
    try:
        fields = path.read_text(encoding="utf-8").split()
        pid, host = int(fields[0]), fields[1]
        start = int(fields[2]) if len(fields) > 2 else 0
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        try:
            fresh = time.time() - path.stat().st_mtime < STALE_EMPTY_SECONDS
        except OSError:
            return None
        return (-1, "") if fresh else None  # being written this instant, or left by a failed write
    if host != socket.gethostname():
        return pid, host
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    if start and (now := _started(pid)) is not None and now != start:
        return None  # the pid now belongs to another process
    return pid, host


def drop_torn_writes(folder: Path) -> int:
    """Remove the temporary files (`.NAME.XXXX.tmp`, fsutil's atomic writes) a killed run left in
    `folder` (a checkpoint's is as large as the checkpoint). Only while holding its LOCK: no other
    process can be writing them. Returns how many went."""
    gone = 0
    for p in folder.glob(".*.tmp"):
        try:
            p.unlink()
            gone += 1
        except OSError:
            pass
    return gone


def release(folder: Path) -> None:
    try:
        (folder / LOCK).unlink()
    except OSError:
        pass


def point_latest(run_dir: Path) -> None:
    """Point runs/latest (in the working directory) at `run_dir`, wherever --out put it, so the
    next `attn predict` uses the model just trained. By name for a run directly in runs/ (the
    folder can move as a whole), else by absolute path. Atomic: a rename over the old link."""
    runs = Path("runs")
    link, tmp = runs / "latest", runs / f".latest-{os.getpid()}"
    if link.exists() and not link.is_symlink():  # a file or folder of the user's: it was replaced unsaid
        log.warning("%s is not attn's link (a %s of yours): left as it is, so attn predict needs --model %s",
                    link, "folder" if link.is_dir() else "file", run_dir)  # fmt: skip
        return
    try:
        runs.mkdir(exist_ok=True)
        inside = run_dir.resolve().parent == runs.resolve()
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name if inside else run_dir.resolve())
        os.replace(tmp, link)
    except OSError as e:
        log.warning("could not update %s (%s)", link, e.strerror or e)


def resumable(run_dir: Path) -> bool:
    """Whether `run_dir` holds anything a run left to go on from or to keep: a checkpoint, an
    ensemble's members, a model."""
    return any(run_dir.rglob(CHECKPOINT)) or any(run_dir.rglob(MEMBERS)) or any(run_dir.rglob(MODEL))


def discard_unstarted(run_dir: Path, created: bool) -> bool:
    """Remove a run directory in which no epoch finished (no checkpoint, no ensemble member):
    nothing in it can be resumed, and it would block the same --out. Only what the run wrote
    goes; a directory the user made (`created` False) stays, emptied. Returns whether it went."""
    if not run_dir.is_dir():
        return False  # removed already (by the user, mid-run): nothing to do
    if resumable(run_dir):
        return False
    try:
        if created:
            shutil.rmtree(run_dir)
        else:
            for p in run_dir.iterdir():
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    except OSError as e:
        log.warning("could not remove %s (%s)", run_dir, e.strerror or e)
        return False
    return True


class RunLog:
    """Copy the 'attn' log, INFO and up, into the run's train.log while the run is active,
    without changing what anyone else is shown: the logger must let INFO records through for the
    file, so while the run lasts every other handler on it, and the propagation to the root
    logger's handlers, keep the threshold the logger had (a `--quiet` terminal stays quiet; so
    does a script's `logging.basicConfig(level=WARNING)`)."""

    def __init__(self, path: Path) -> None:
        # backslashreplace: a file name that is not UTF-8 is logged with a backslash escape, not a logging traceback
        self.handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.logger = logging.getLogger("attn")
        self.old_level, self.old_propagate = self.logger.level, self.logger.propagate
        self.raised: list[tuple[logging.Handler, int]] = []
        self.gate: logging.Handler | None = None

    def __enter__(self):
        threshold = self.logger.getEffectiveLevel()
        if threshold > logging.INFO:
            for h in self.logger.handlers:
                if h.level < threshold:
                    self.raised.append((h, h.level))
                    h.setLevel(threshold)
            if self.logger.propagate and self.logger.parent is not None:
                self.gate = _Propagate(self.logger.parent, threshold)
                self.logger.addHandler(self.gate)
                self.logger.propagate = False
            self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        if self.gate is not None:
            self.logger.removeHandler(self.gate)
        for h, level in self.raised:
            h.setLevel(level)
        self.logger.setLevel(self.old_level)
        self.logger.propagate = self.old_propagate
        self.handler.close()


class _Propagate(logging.Handler):
    """Passes records at `level` and up to `parent`'s handlers, as propagation would have."""

    def __init__(self, parent: logging.Logger, level: int) -> None:
        super().__init__(level)
        self.parent = parent

    def emit(self, record: logging.LogRecord) -> None:
        self.parent.callHandlers(record)
