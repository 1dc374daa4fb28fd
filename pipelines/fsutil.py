"""Crash-safe file writes: write a temporary file beside the target, flush, fsync, rename.

A crash at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from pathlib import Path

from attn.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a finished artifact should get the usual permissions.
_FILE_MODE = 0o666 & ~_umask()


def _output_error(path: Path, e: OSError) -> OutputError:
    why = {
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EDQUOT: "disk quota exceeded",
    }.get(e.errno or 0, e.strerror or str(e))
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # a folder on the way is a file: "(File exists)" said nothing
        file = next((p for p in (path, *path.parents) if p.is_file()), None)
        if file is not None and file != path or e.errno == errno.EEXIST and file == path:
            why = f"{file} is a file, not a folder"
    return OutputError(f"{path}: cannot write ({why})")


def _refuse_special(path: Path) -> None:
    """The rename that makes a write atomic replaces whatever `path` names: run as root with
    `--out /dev/null`, it put a regular file in place of the device. Only a regular file (or a
    link to one, or nothing) is replaced."""
    import stat

    try:
        kind = os.stat(path).st_mode
    except OSError:
        return  # nothing there (or a broken link): the write creates the file
    if not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
        what = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a named pipe",
                stat.S_ISSOCK: "a socket"}  # fmt: skip
        name = next((v for test, v in what.items() if test(kind)), "not a regular file")
        raise OutputError(f"{path}: cannot write ({name}, not a file); give a file name")


def _tmp_prefix(path: Path) -> str:
    """The temporary file's name start: ".NAME." as long as the whole stays within the 255 bytes a
    file name may have (mkstemp adds 8 characters and ".tmp"); a longer NAME (241-255 bytes, a
    legal output name) is cut, so the write is not refused as 'File name too long'."""
    room = 255 - 2 - 8 - len(".tmp")
    name = os.fsencode(path.name)
    return "." + (os.fsdecode(name[:room]) if len(name) > room else path.name) + "."


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """`mode`: the file's permissions (default: the usual, as the umask leaves them)."""
    path = Path(path)
    _refuse_special(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE if mode is None else mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise _output_error(path, e) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (history files: a crash loses at most this line)."""
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _output_error(path, e) from None


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, as `atomic_write_bytes` would at the end, when `path` cannot be written: for a
    result that takes long to compute (an export), before the work rather than after it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: cannot write (a directory)")
    _refuse_special(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _output_error(path, e) from None


def make_dirs(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _output_error(path, e) from None
    return path


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a folder and what it holds, if it exists; a failure is an OutputError naming it."""
    import shutil

    path = Path(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _output_error(path, e) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# A stop asked for by a signal (SIGTERM), kept beside the KeyboardInterrupt its handler raises:
# code that catches or wraps that exception (a library calling back into Python, a finalizer)
# could swallow it, and the run went on to its end (1 of 62 tries with SIGTERM at a run's start).
# The trainer checks this flag every step, so a swallowed stop still stops.
STOP_REQUESTED = threading.Event()


def stop_if_requested() -> None:
    """A KeyboardInterrupt when a stop was asked for (`STOP_REQUESTED`), once."""
    if STOP_REQUESTED.is_set():
        STOP_REQUESTED.clear()
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_after():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them: a save of several files
    (an epoch's model and checkpoint, and the epoch it records) is whole or not begun, never
    stopped between its files. Outside the main thread (where no signal arrives) a plain block."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in before:
        signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if held:
            handler = before[held[0]]
            if callable(handler):  # Python's Ctrl-C handler, or the CLI's SIGTERM one: each raises
                handler(held[0], None)
            elif held[0] == signal.SIGINT and handler != signal.SIG_IGN:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])
