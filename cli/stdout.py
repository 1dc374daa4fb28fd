"""stdout as a shell script hands it over: closed (`>&-`), full (`> /dev/full`, a full disk), or
a pipe whose reader left early (`attn evaluate | head -1`).

The rule, the same for every command (docs/errors.md):
- stdout closed: exit 3 before any work (results would have nowhere to go, and the first file
  attn opened would take descriptor 1 and receive them);
- a write fails: exit 3 with one line, `error: cannot write to stdout (<reason>)`;
- the reader left (EPIPE): stop quietly with exit 0: the reader took what it wanted, as with
  `attn predict ... | head`, which always behaved this way.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class StdoutError(Exception):
    """A write to stdout failed. Deliberately not an OSError: rich turns a BrokenPipeError into
    its own `SystemExit(1)`, and this must reach `handle_errors` whatever library wrote."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error

    @property
    def reader_left(self) -> bool:
        return isinstance(self.error, BrokenPipeError)

    @property
    def reason(self) -> str:
        why = self.error.strerror or str(self.error)
        return why[:1].lower() + why[1:]


class StdoutClosed(Exception):
    """stdout was closed when attn started (`>&-`)."""


class _Guarded:
    """A text stream that raises `StdoutError` where its write or flush raises OSError."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, s: str) -> int:
        try:
            return self._stream.write(s)
        except OSError as e:
            raise StdoutError(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise StdoutError(e) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """sys.stdout guarded for the length of a command; what is still buffered is flushed at the
    end, inside the guard, so a full disk is reported rather than lost at interpreter exit."""
    original = sys.stdout
    if original is None:
        raise StdoutClosed
    sys.stdout = _Guarded(original)
    try:
        try:
            yield
        finally:
            sys.stdout.flush()
    finally:
        sys.stdout = original


def discard_stdout() -> None:
    """Point descriptor 1 at /dev/null, so the interpreter's final flush of what is still buffered
    neither fails again nor turns the exit code into 120."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real descriptor (tests capture stdout in memory)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass
