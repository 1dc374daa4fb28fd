"""What every command shares: error handling, logging to stderr, TTY detection, the model and
recipe options. Only the CLI imports typer and rich; the library never prints."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
from typing import Annotated

import typer

from attn.api import env_threads
from attn.errors import EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_USAGE, AttnError  # EXIT_USAGE: also typer's usage code


class State:
    debug = bool(os.environ.get("ATTN_DEBUG"))
    terminated = False  # SIGTERM arrived (a batch scheduler's time limit, `kill`)


EXIT_TERMINATED = 128 + 15  # what a shell reports for a process SIGTERM ended


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's time limit, `kill`, `timeout`) stops a command the way Ctrl-C does:
    a training names the epoch it saved and how to resume, a batch says how far it got, temporary
    files (a pipe's copy) and an unstarted run folder are removed, the run's lock is released.
    Left as it is where a command installed its own handler (serve) or outside the main thread."""
    import signal
    import threading

    from attn.api import clear_stop, request_stop

    def on_term(signum, frame):
        State.terminated = True
        request_stop()  # kept beside the exception, which code that wraps or swallows it could lose
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        clear_stop()  # one command's stop is not the next one's (several run in one test process)


def f4(x: float | None) -> str:
    """A metric to 4 places, or "n/a" where it is undefined (an error rate without references)."""
    return "n/a" if x is None else f"{x:.4f}"


def interrupted_code() -> int:
    return EXIT_TERMINATED if State.terminated else EXIT_INTERRUPTED


def stopped_by() -> str:
    """How a stopped command says it stopped: "terminated" (SIGTERM) or "interrupted" (Ctrl-C)."""
    return "terminated" if State.terminated else "interrupted"


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


# Modules of the optional extras that a command can reach through a model file or a recipe (a
# pretrained encoder's tokenizer and weights, an audio encoder's architecture): their absence is
# a missing install step, not a bug. The extras with a check of their own (serve, export,
# events, tensorboard, vectors) say so before this is reached.
EXTRAS = {
    "tokenizers": ("pretrained", "a pretrained encoder's tokenizer"),
    "safetensors": ("pretrained", "a pretrained encoder's weights"),
    "transformers": ("pretrained", "a pretrained audio encoder"),
}


def handle_errors(fn):
    """Turn library errors into one stderr line and their exit code, and guard stdout (see
    stdout.py). `--debug` adds the traceback above that line; the exit code stays the same."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .stdout import StdoutClosed, StdoutError, discard_stdout, guarded_stdout

        try:
            with guarded_stdout(), sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except StdoutClosed:
            err("error: stdout is closed (started with >&-): attn writes its results there; "
                "redirect it to a file or to /dev/null instead")  # fmt: skip
            raise typer.Exit(EXIT_OUTPUT) from None
        except (StdoutError, BrokenPipeError) as e:
            discard_stdout()
            if isinstance(e, BrokenPipeError) or e.reader_left:  # `attn ... | head`: the reader left
                raise typer.Exit(0) from None
            _traceback()
            err(f"error: cannot write to stdout ({e.reason})")
            raise typer.Exit(EXIT_OUTPUT) from None
        except AttnError as e:
            _traceback()
            err(f"error: {e}")
            raise typer.Exit(interrupted_code() if e.exit_code == EXIT_INTERRUPTED else e.exit_code) from None
        except KeyboardInterrupt:
            _traceback()
            err("terminated (SIGTERM)" if State.terminated else "interrupted")
            raise typer.Exit(interrupted_code()) from None
        except Exception as e:  # noqa: BLE001 - last resort: a bug, not the user's fault
            _traceback()
            if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:  # a path the user gave, over the limit
                err(f"error: {os.fsdecode(e.filename) if e.filename else 'a path'}: file name too long")
                raise typer.Exit(2) from None
            if _from_interrupt(e) or State.terminated:  # SIGTERM or Ctrl-C landed in a library that wrapped it
                # (pydantic's serializer: "PydanticSerializationError: ... KeyboardInterrupt", no cause chained)
                err("terminated (SIGTERM)" if State.terminated else "interrupted")
                raise typer.Exit(interrupted_code()) from None
            if _peer_gone(e):  # torchrun: another process stopped first (its own error says why)
                err("error: another process of this torchrun run stopped, so this one cannot go on (that "
                    "process's error says why; a run that saved an epoch resumes with the same torchrun line and "
                    "attn train --resume RUN_DIR)")  # fmt: skip
                raise typer.Exit(1) from None
            extra = EXTRAS.get((e.name or "").split(".")[0]) if isinstance(e, ModuleNotFoundError) else None
            if extra is not None:  # a model or recipe that needs an extra the install lacks: the user's to add
                err(f"error: {extra[1]} needs the package {e.name}: pip install 'attn[{extra[0]}]'")
                raise typer.Exit(2) from None
            hint = "" if State.debug else " (run `attn --debug ...` for the traceback)"
            err(f"error: internal error: {type(e).__name__}: {' '.join(str(e).split())}{hint}")  # one line
            raise typer.Exit(1) from None

    return wrapper


PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


def _peer_gone(e: BaseException) -> bool:
    """Whether `e` is torch.distributed's word for a peer process that left (Gloo's 'Connection
    closed by peer', shown as an internal error ending in 'GLHF!')."""
    try:
        several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        several = False
    return several and isinstance(e, RuntimeError) and any(p in str(e) for p in PEER_GONE)


def _from_interrupt(e: BaseException) -> bool:
    """Whether `e` was caused by a KeyboardInterrupt (its __cause__ or __context__ chain)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _traceback() -> None:
    if State.debug:
        import traceback

        traceback.print_exc()


def cli_handlers(logger: logging.Logger | None = None) -> list[logging.Handler]:
    """The handlers `setup_logging` put on `logger` (default "attn"): the command's stderr lines."""
    logger = logger or logging.getLogger("attn")
    return [h for h in logger.handlers if getattr(h, "_attn_cli", False)]


def setup_logging(quiet: bool = False, console=None, errors_only: bool = False) -> None:
    """Library log records -> stderr: rich on a terminal, plain lines otherwise. `errors_only`:
    a torchrun process other than rank 0 (its warnings are rank 0's, said once)."""
    logger = logging.getLogger("attn")
    for h in cli_handlers(logger):
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
    handler._attn_cli = True  # type: ignore[attr-defined]  # read by cli_handlers() alone
    # The handler keeps its own threshold: a run raises the logger to INFO for its train.log
    # (pipelines/store/rundir.py), and --quiet must stay quiet on the terminal all the same.
    level = logging.ERROR if errors_only else logging.WARNING if quiet else logging.INFO
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


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
        "--threads",
        min=1,
        help="CPU threads for torch (default: $ATTN_THREADS, else the cores the load average leaves free, at least 1).",
        show_default=False,
    ),
]


def set_threads(threads: int | None) -> None:
    """--threads, else $ATTN_THREADS, else `auto_threads()`: on a small or shared machine one
    thread is often much faster than two fighting other work for the cores (bench/cases_threads.py)."""
    import torch

    torch.set_num_threads(threads or env_threads() or auto_threads())


def auto_threads() -> int:
    """torch's default (one thread per physical core) less the cores other work keeps busy, at
    least 1. Call it before anything sets torch's threads."""
    import torch

    default = torch.get_num_threads()
    busy = busy_cores()
    if busy is None:
        return default
    return max(1, min(default, round(usable_cpus() - busy)))


def usable_cpus() -> int:
    return len(_cpus())


def _cpus() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return set(range(os.cpu_count() or 1))


def _cpu_jiffies(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks of the CPUs `cpus` since boot, from /proc/stat (Linux); None
    elsewhere. Busy is all but idle and iowait."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            v = [int(x) for x in values[:8]]  # user nice system idle iowait irq softirq steal
            total, busy = total + sum(v), busy + sum(v) - v[3] - v[4]
    return (busy, total) if total else None


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


# The CPUs' counters when the command started: the cores other work used from here until the
# thread count is chosen (after `import torch`, 2-6 s later) are measured, not guessed.
_START = (_cpu_jiffies(_cpus()), _own_seconds())
MIN_SPAN = 0.25  # seconds of measurement below which the load average decides


def busy_cores() -> float | None:
    """How many of this process's CPUs other work kept busy since the command started, from
    /proc/stat less this process's own CPU time. The 1-minute load average (or the processes
    runnable now, when more) where that cannot be measured: it lags by a minute, so a run that
    has just ended still counted there, and every run of a batch script after the first got half
    the cores (SST-2 fine-tuning: 714 s on the one thread it chose, 405 s on two). None where
    the system reports neither."""
    cpus = _cpus()
    start, own = _START
    now = _cpu_jiffies(cpus)
    if start is not None and now is not None:
        tick = os.sysconf("SC_CLK_TCK")  # /proc/stat's unit (Linux, where it exists)
        span = (now[1] - start[1]) / len(cpus) / tick  # wall seconds the counters cover
        if span >= MIN_SPAN:
            others = (now[0] - start[0]) / tick - (_own_seconds() - own)  # CPU-seconds of other work
            return max(0.0, others / span)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    now_runnable = _runnable_now()
    return busy if now_runnable is None else max(busy, now_runnable)


def _runnable_now() -> float | None:
    """Processes runnable at this moment less this one (/proc/loadavg's fourth field), or None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return float(f.read().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        return None


# predict and listen: when to answer `unknown`, and a multi-label model's threshold
MinScoreOpt = Annotated[
    float | None,
    typer.Option(
        "--min-score",
        help="Answer `unknown` when the top score is below this (0-1); the record "
        "keeps the score and names the best label in best_label. Default: the model's stored "
        "min score (train.abstain), else never.",
        show_default=False,
    ),
]
MinSimilarityOpt = Annotated[
    float | None,
    typer.Option(
        "--min-similarity",
        help="Models with a novelty check (train.abstain.novelty): answer `unknown` (with "
        '"novel": true) when the input\'s similarity to the training data is below this (-1 to 1; '
        "-1: never). Default: the stored one.",
        show_default=False,
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Multi-label models: one decision threshold for every class "
        "(default: the per-class thresholds chosen on validation).",
        show_default=False,
    ),
]
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


def check_out(out: str | None) -> None:
    """`--out -` names no stream here: these commands write files or folders (a model, PNGs, a
    .npy), so `-` is refused rather than becoming a file named "-" (./- still names one)."""
    if out == "-":
        raise fail("--out -: this command writes files, not to stdout; give a file or folder name")


def check_model_or_recipe(model: str | None, recipe: str | None, set_: list[str] | None) -> None:
    """--model and --recipe exclude each other; --set overrides a recipe, so it needs one."""
    if recipe is not None and model is not None:
        raise fail("give --model or --recipe, not both")
    if set_ and recipe is None:
        raise fail("--set needs --recipe")


def audio_paths(model, inputs: list[str] | None, text: list[str] | None) -> list:
    """The audio files an audio model gets from the command line (files, folders, - for paths on
    stdin); --text, or nothing to read, is a usage error."""
    from attn.api import audio_files

    if text:
        raise fail(f"--text given, but {model.path} is an audio model")
    paths = audio_files(model, inputs or [])
    if not paths:
        raise no_inputs(inputs)
    return paths


def no_inputs(inputs: list[str] | None) -> typer.Exit:
    """The usage error for a command left with nothing to do, saying where it looked."""
    files = [x for x in inputs or [] if x != "-"]
    if files:
        return fail(f"no inputs ({', '.join(files)}: no text in {'them' if len(files) > 1 else 'it'})"
                    + (", and stdin was empty" if "-" in (inputs or []) else ""))  # fmt: skip
    return fail("no inputs (stdin was empty)")
