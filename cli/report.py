"""attn report"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import QuietOpt, ThreadsOpt, handle_errors, set_threads, setup_logging

EPILOG = """\
Examples:

  attn report                                  # runs/latest/report.html

  attn report runs/digits-20261122-101500      # an older run (every attn train writes one)

The page is self-contained (images inline): open it from disk, mail it, keep it with the run.
It scores the evaluated split again to list the most confidently wrong examples, so it needs the
run's data; without it the other sections are still written.
"""


@handle_errors
def report_cmd(
    run: Annotated[str | None, typer.Argument(help="Run directory (default: runs/latest).", show_default=False)] = None,
    quiet: QuietOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Write a run's report.html: learning curves, confusion matrix, per-class metrics, wrong examples."""
    import attn

    setup_logging(quiet)
    set_threads(threads)  # it scores the evaluated split again
    print(attn.report(run))
