"""attn tune"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Annotated, Any, Literal

import typer

from .common import (
    DeviceOpt,
    QuietOpt,
    SetOpt,
    ThreadsOpt,
    check_out,
    cli_handlers,
    err,
    fail,
    handle_errors,
    setup_logging,
    stderr_console,
)

EPILOG = """\
Examples:

  attn tune recipes/quickstart.yaml --trials 20 --timeout 30m

  attn tune recipes/trec.yaml --jobs 2 --refit --out tunes/trec

  attn tune --resume tunes/trec          # after a crash, a kill or Ctrl-C

  # several hosts, one study: run the same line on each
  attn tune recipes/digits.yaml --storage postgresql://user:pw@db/attn --study digits --trials 60

Each trial is an ordinary training of the recipe with the trial's values set, scored on the
validation split (train.monitor), never on test. The space is the recipe's tune: section, else
the model family's default (see the README). Writes tunes/<recipe>-<time>/: study.db, trials.jsonl,
best.yaml (the best trial's recipe), best/ (its run directory), importances.json, refit/.
"""


@handle_errors
def tune_cmd(
    recipe: Annotated[str | None, typer.Argument(help="Recipe YAML file.", show_default=False)] = None,
    set_: SetOpt = None,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            "-n",
            min=1,
            help="Trials in the study (default 20; with --timeout, as many as fit).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            "-t",
            help="Time budget, e.g. 90s, 30m, 2h: no trial starts after it, running ones stop at their next epoch.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Trial processes on this host.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Study database shared by processes or hosts (an SQLAlchemy URL, e.g. "
            "postgresql://user:pw@host/db). Default: SQLite in the tune directory.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="Study name in the storage (default: recipe's stem).", show_default=False),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Tune directory (default tunes/<recipe>-<time>); one holding the same study is joined.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue a tune directory.", show_default=False)
    ] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Retrain the best recipe on train+val (refit/).")] = False,
    pruner: Annotated[
        Literal["median", "halving", "none"], typer.Option("--pruner", help="Stop hopeless trials early.")
    ] = "median",
    seed: Annotated[
        int | None, typer.Option(help="Sampler seed (default: train.seed).", min=0, show_default=False)
    ] = None,
    device: DeviceOpt = "auto",
    fmt: Annotated[Literal["text", "json", "jsonl"], typer.Option("--format", "-f", help="Result on stdout.")] = "text",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Search a recipe's hyperparameters (Optuna: TPE, pruning); the leaderboard goes to stdout."""
    fmt = "json" if fmt == "jsonl" else fmt  # a single JSON line: jsonl too, one word across commands
    check_out(out)
    import attn

    if (recipe is None) == (resume is None):
        raise fail("give a RECIPE to tune, or --resume TUNE_DIR to continue one (not both)")
    if resume is not None and (set_ or storage or study or out or seed is not None):
        raise fail("--resume continues a tune as it was set up: --set, --storage, --study, --out and --seed cannot "
                   "change it")  # fmt: skip
    console = None if quiet else stderr_console()
    setup_logging(quiet, console)
    _trial_lines_only(quiet)
    if threads and jobs == 1:
        import torch

        torch.set_num_threads(threads)
    progress = None
    if console is not None:
        from .progress import RichTuneProgress

        progress = RichTuneProgress(console)
    with progress if progress is not None else contextlib.nullcontext():
        result = attn.tune(recipe, list(set_ or []), trials=trials, timeout=timeout, jobs=jobs, storage=storage,
                           study=study, out=out, resume=resume, refit=refit, pruner=pruner, seed=seed, device=device,
                           threads=threads, callbacks=progress)  # fmt: skip
    summary = result.summary()
    if fmt == "json":
        print(json.dumps(summary))
    else:
        _print_text(summary)
    if summary["best"] is None:
        err(f"error: no trial completed; see {result.tune_dir}/trials.jsonl")
        raise typer.Exit(1)


def _trial_lines_only(quiet: bool) -> None:
    """On stderr, a line per trial (attn.tune) and warnings; each epoch's line stays in the
    trial's train.log (which raises the logger to INFO while a trial runs, --quiet or not)."""
    for h in cli_handlers():
        h.addFilter(lambda r: r.levelno >= logging.WARNING or (not quiet and r.name == "attn.tune"))


def _print_text(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True, width=400)  # the table at its natural width: rows are never cut
    keys = list(s["space"])
    names = _short_names(keys)
    t = Table(show_edge=False, box=None, header_style="bold")
    for col in ("trial", "state", s["metric"], "epochs", "seconds", *(names[k] for k in keys)):
        t.add_column(escape(col), justify="left" if col in ("state",) else "right")
    states = []
    for r in s["leaderboard"]:
        # `*` marks the run of the recipe as written that counts: not an interrupted one (it ran again)
        mark = " *" if r.get("baseline") and not r.get("interrupted") else ""
        state = r["state"] + (" (interrupted)" if r.get("interrupted") else "") + mark
        states.append(state)
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        vals = [_fmt(r["values"].get(k, "")) for k in keys]
        t.add_row(str(r["number"]), state, value, str(r["epochs"] or ""), secs, *map(escape, vals))
    console.print(t)
    for r in s["leaderboard"]:
        if r.get("error"):
            console.print(f"trial {r['number']} failed: {escape(r['error'])}", highlight=False)
    c, best = s["trials"], s["best"]
    of = "" if c["requested"] is None else f" of {c['requested']}"
    again = f", {c['interrupted']} interrupted (run again)" if c.get("interrupted") else ""
    star = "; * = the recipe as written" if any("*" in row for row in states) else ""
    lines = [f"trials     {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed{again}{of} "
             f"({s['seconds'] / 60:.1f} min){star}"]  # fmt: skip
    if best is not None:
        test = (
            f" (test accuracy {best['test_accuracy']:.4f}: reported, not used to choose)"
            if "test_accuracy" in best
            else ""
        )
        lines += [f"best       trial {best['number']}: {s['metric']} {best['value']:.4f}{test}",
                  f"recipe     {best['recipe']}"]  # fmt: skip
    if s["importances"]:
        lines.append("importance " + ", ".join(f"{names[k]} {v:.2f}" for k, v in s["importances"].items()))
    elif s.get("importances_note"):
        lines.append(f"importance {s['importances_note']}")
    if s["refit"]:
        acc = s["refit"]["test_accuracy"]
        lines.append(f"refit      {s['refit']['model']}" + ("" if acc is None else f" (test accuracy {acc:.4f})"))
    lines.append(f"tune dir   {s['tune_dir']}")
    console.print("\n".join(escape(x) for x in lines), highlight=False)


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each key's last part, or the whole key where two share a last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (n if last.count(n) == 1 else k) for k, n in zip(keys, last, strict=True)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)
