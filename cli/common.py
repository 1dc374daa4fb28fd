"""What every command shares: error handling, logging to stderr, TTY detection, the model and
recipe options. Only the CLI imports typer and rich; the library never prints."""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Annotated

import typer

from attn.errors import EXIT_INTERRUPTED, EXIT_USAGE, AttnError  # EXIT_USAGE is also typer's own usage-error code


class State:
    debug = bool(os.environ.get("ATTN_DEBUG"))


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def err(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err(f"error: {message}")
    return typer.Exit(code)


def handle_errors(fn):
    """Turn library errors into one stderr line and their exit code (tracebacks with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except AttnError as e:
            if State.debug:
                raise
            err(f"error: {e}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if State.debug:
                raise
            err("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # `attn predict ... | head`: the reader left; stop quietly.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            raise typer.Exit(0) from None
        except Exception as e:  # noqa: BLE001 - last resort: a bug, not the user's fault
            if State.debug:
                raise
            err(f"error: internal error: {type(e).__name__}: {e} (run `attn --debug ...` for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


def setup_logging(quiet: bool = False, console=None) -> None:
    """Library log records -> stderr: rich on a terminal, plain lines otherwise."""
    logger = logging.getLogger("attn")
    for h in list(logger.handlers):
        if getattr(h, "_attn_cli", False):
            logger.removeHandler(h)
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=console, show_time=False, show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    handler._attn_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


class _ConsoleHandler(logging.Handler):
    """Log lines through the rich console, so they print above live progress bars."""

    def __init__(self, console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                self.console.print(f"{record.levelname.lower()}: {msg}", style="yellow", markup=False, highlight=False)
            else:
                self.console.print(msg, markup=False, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"attn: {level}{record.getMessage()}"


def stderr_console():
    """A rich console on stderr when it is a terminal, else None."""
    if not is_tty(sys.stderr):
        return None
    from rich.console import Console

    return Console(stderr=True)


# Options shared by several commands.
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model file or run directory. Default: $ATTN_MODEL, else runs/latest.", show_default=False
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: torch's choice; $ATTN_THREADS).", show_default=False
    ),
]


def set_threads(threads: int | None) -> None:
    """On small or shared machines one thread is often faster than two fighting for cores."""
    n = threads or int(os.environ.get("ATTN_THREADS", "0") or 0)
    if n:
        import torch

        torch.set_num_threads(n)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr; no progress.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a recipe key (repeatable), e.g. --set train.epochs=5.",
        show_default=False,
    ),
]


def recipe_opt(help: str):
    """The --recipe/-r option (a recipe YAML file), with each command's own help."""
    return Annotated[str | None, typer.Option("--recipe", "-r", help=help, show_default=False)]


def check_model_or_recipe(model: str | None, recipe: str | None, set_: list[str] | None) -> None:
    """--model and --recipe exclude each other; --set overrides a recipe, so it needs one."""
    if recipe is not None and model is not None:
        raise fail("give --model or --recipe, not both")
    if set_ and recipe is None:
        raise fail("--set needs --recipe")
