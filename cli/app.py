"""The `attn` command: wires the sub-commands; each lives in its own module and imports the
library (and torch) only when it runs, so `attn --help` stays fast."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from attn.errors import EXIT_INTERRUPTED, EXIT_OUTPUT

from . import (
    embed,
    evaluate,
    explain,
    export,
    features,
    info,
    listen,
    predict,
    report,
    serve,
    tokenize,
    train,
    tune,
    tune_events,
)
from .common import EXIT_TERMINATED, State, err, interrupted_code

app = typer.Typer(
    name="attn",
    help="Train and run audio and text classifiers.\n\n"
    "Quick start: attn train recipes/quickstart.yaml, then attn predict FILE.wav",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich formatting costs ~0.15 s per --help
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 ok, 1 some inputs failed or training failed, 2 usage/config/model error, "
    "3 output not writable, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Add --debug before the command for "
    "tracebacks.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"attn {version('attn')}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    State.debug = State.debug or debug


def _epilog(text: str) -> str:
    """Mark indented paragraphs (the examples) with click's \\b so a narrow terminal does not
    re-wrap a command line and its comment into one run of words."""
    return "\n\n".join(f"\b\n{p}" if p.startswith("  ") else p for p in text.split("\n\n"))


app.command("train", epilog=_epilog(train.EPILOG))(train.train_cmd)
app.command("predict", epilog=_epilog(predict.EPILOG))(predict.predict_cmd)
app.command("evaluate", epilog=_epilog(evaluate.EPILOG))(evaluate.evaluate_cmd)
app.command("features", epilog=_epilog(features.EPILOG))(features.features_cmd)
app.command("info", epilog=_epilog(info.EPILOG))(info.info_cmd)
app.command("tokenize", epilog=_epilog(tokenize.EPILOG))(tokenize.tokenize_cmd)
app.command("tune", epilog=_epilog(tune.EPILOG))(tune.tune_cmd)
app.command("export", epilog=_epilog(export.EPILOG))(export.export_cmd)
app.command("explain", epilog=_epilog(explain.EPILOG))(explain.explain_cmd)
app.command("report", epilog=_epilog(report.EPILOG))(report.report_cmd)
app.command("embed", epilog=_epilog(embed.EPILOG))(embed.embed_cmd)
app.command("serve", epilog=_epilog(serve.EPILOG))(serve.serve_cmd)
app.command("listen", epilog=_epilog(listen.EPILOG))(listen.listen_cmd)
app.command("tune-events", epilog=_epilog(tune_events.EPILOG))(tune_events.tune_events_cmd)


def main() -> None:
    from .stdout import StdoutClosed, StdoutError, discard_stdout, guarded_stdout

    try:
        # stdout guarded here too, for what click writes itself (--help, --version, completion):
        # `attn --help > /dev/full` was a traceback, `| true` exit 1 and `>&-` exit 0
        with guarded_stdout():
            app()
    except KeyboardInterrupt:  # one that got past every command's handling (during cleanup, exit): no traceback
        _exit_stopped(interrupted_code())
    except SystemExit as e:
        if e.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            _exit_stopped(e.code)
        raise
    except StdoutClosed:
        err("error: stdout is closed (started with >&-): attn writes its results there; "
            "redirect it to a file or to /dev/null instead")  # fmt: skip
        raise SystemExit(EXIT_OUTPUT) from None
    except (StdoutError, BrokenPipeError) as e:
        discard_stdout()
        if isinstance(e, BrokenPipeError) or e.reader_left:  # `attn --help | head`: the reader left
            raise SystemExit(0) from None
        err(f"error: cannot write to stdout ({e.reason})")
        raise SystemExit(EXIT_OUTPUT) from None


def _exit_stopped(code: int) -> None:
    """Exit a stopped command with its code now, past the interpreter's own exit. A Ctrl-C or
    SIGTERM that landed in code a C extension ran through CPython's eval (a lazy import) leaves
    CPython's "unhandled KeyboardInterrupt" flag set, though attn handled it: the process then
    killed itself with SIGINT after saying "terminated" (exit -2 for 143; 3 of 92 tries with
    SIGTERM at a run's start). The streams are flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)
