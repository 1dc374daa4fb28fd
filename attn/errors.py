"""Errors the library raises on purpose, each with the exit code the CLI turns it into.

Exit codes (docs/errors.md keeps the user-facing table):
  0  success
  1  the job ran but something failed: an input could not be read, training diverged
  2  usage or configuration error: bad flag, recipe, model file or device; nothing was done
  3  output could not be written (read-only directory, disk full)
  130 interrupted (Ctrl-C); state saved so far is kept
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_OUTPUT = 3
EXIT_INTERRUPTED = 130


class AttnError(Exception):
    """Base class: a one-line message meant for the user, and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AttnError):
    """A recipe, override or flag is invalid (nothing has run yet)."""

    exit_code = EXIT_USAGE


class ArtifactError(AttnError):
    """A model or checkpoint file is missing, corrupt, tampered with or from a newer attn."""

    exit_code = EXIT_USAGE


class InputError(AttnError):
    """One input (audio file, text row, manifest) cannot be used."""

    exit_code = EXIT_FAILED


class TrainingError(AttnError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""

    exit_code = EXIT_FAILED


class OutputError(AttnError):
    """A result could not be written (read-only directory, full disk)."""

    exit_code = EXIT_OUTPUT


class Interrupted(AttnError):
    """Ctrl-C during a long job; what was saved so far is kept (the message says how to resume)."""

    exit_code = EXIT_INTERRUPTED
