"""attn train"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Literal

import typer

from attn.errors import ConfigError

from .common import (
    DeviceOpt,
    QuietOpt,
    SetOpt,
    ThreadsOpt,
    check_out,
    fail,
    handle_errors,
    is_tty,
    set_threads,
    setup_logging,
    stderr_console,
)
from .render import baseline_line

EPILOG = """\
Examples:

  attn train recipes/quickstart.yaml

  attn train recipes/digits.yaml --set train.epochs=5 --set model.dropout=0.3

  attn train audio.yaml --set data.root=my_sounds     # a shipped recipe by name, from any folder

  ATTN_DATA=/data attn train recipes/digits.yaml --device cuda --out runs/digits-big

  attn train --resume runs/digits-20261122-101500

  attn train recipes/quickstart.yaml --tensorboard runs/tb     # then: tensorboard --logdir runs/tb

Writes runs/<recipe>-<time>/ (or --out DIR: model.attn, recipe.yaml, history.jsonl, metrics.json,
train.log, report.html) and points runs/latest at it, wherever it is, so `attn predict FILE` uses
it next. A run that fails before its first epoch ends leaves no directory behind.
"""


@handle_errors
def train_cmd(
    recipe: Annotated[
        str | None,
        typer.Argument(help="Recipe YAML file, or a shipped recipe's name (audio.yaml).", show_default=False),
    ] = None,
    set_: SetOpt = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Run directory (default runs/<recipe>-<time>).", show_default=False),
    ] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[int | None, typer.Option(help="Override train.seed.", min=0, show_default=False)] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            "--folds",
            help="Cross-validate over K folds (train.folds), then save the refit or the fold ensemble "
            "(train.folds_final).",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue an interrupted run directory.", show_default=False)
    ] = None,
    tensorboard: Annotated[
        str | None,
        typer.Option(
            "--tensorboard",
            help="Write TensorBoard event files into DIR/<run name>, beside other runs' (needs "
            "attn[tensorboard]; train.tensorboard: true puts them in <run>/tensorboard).",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    fmt: Annotated[Literal["text", "json", "jsonl"], typer.Option("--format", "-f", help="Result on stdout.")] = "text",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a model from a recipe; the test metrics and the run directory go to stdout."""
    fmt = "json" if fmt == "jsonl" else fmt  # a single JSON line: jsonl too, one word across commands
    check_out(out)
    import attn
    from attn.api import main_process

    if (recipe is None) == (resume is None):
        raise fail("give a RECIPE to train, or --resume RUN_DIR to continue a run (not both)")
    main_rank = main_process()  # under torchrun only rank 0 logs and prints
    quiet = quiet or not main_rank
    console = None if quiet else stderr_console()
    setup_logging(quiet, console, errors_only=not main_rank)
    set_threads(threads)
    progress = None
    if console is not None:
        from .progress import RichTrainProgress

        progress = RichTrainProgress(console)
    with progress if progress is not None else contextlib.nullcontext():
        if resume is not None:
            if set_ or seed is not None or out or folds is not None:
                raise fail("--resume continues a run exactly: --set, --seed, --folds and --out cannot change it")
            result = attn.resume(resume, device=device, callbacks=progress, tensorboard=tensorboard, threads=threads)
        else:
            overrides = list(set_ or [])
            if seed is not None:
                overrides.append(f"train.seed={seed}")
            if folds is not None:
                overrides.append(f"train.folds={folds}")
            try:
                result = attn.train(recipe, overrides, out=out, device=device, callbacks=progress,
                                    tensorboard=tensorboard)  # fmt: skip
            except ConfigError as e:  # a problem with --folds/--seed names the flag typed, not a --set
                for flag, value, key in (("--folds", folds, "train.folds"), ("--seed", seed, "train.seed")):
                    if value is not None and str(e).startswith(f"--set {key}={value}: "):
                        raise ConfigError(f"{flag} {value}: " + str(e).split(": ", 1)[1]) from None
                raise
    if not main_rank:
        return
    summary = result.summary()
    if fmt == "json":
        print(json.dumps(summary))
        return
    acc, m = summary["test_accuracy"], result.metrics or {}
    scores = ("accuracy   n/a (no test or validation data)" if acc is None else
              f"accuracy   {acc:.4f} (macro-F1 {summary['test_macro_f1']:.4f}, {m.get('split', 'test')})"
              if not m.get("multi_label") else  # its "accuracy" is exact-set match: named so, beside its own figures
              f"macro-F1   {m.get('macro_f1', 0):.4f} (micro-F1 {m.get('micro_f1', 0):.4f}, macro mAP "
              f"{m.get('macro_map', 0):.4f}, exact-set match {m.get('exact_match', 0):.4f}, "
              f"{m.get('split', 'test')})")  # fmt: skip
    lines = [
        f"run        {summary['run_dir']}",
        f"model      {summary['model']}",
        scores,
        f"epochs     {summary['epochs']} (best {summary['best_epoch']}"
        + (", stopped early)" if summary["stopped_early"] else ")")
        if not result.members
        else f"members    {len(result.members)}, test accuracy "
        + " ".join("n/a" if m["test_accuracy"] is None else f"{m['test_accuracy']:.4f}" for m in result.members)
        + f" ({summary['epochs']} epochs in all)",
        f"time       {summary['train_seconds']:.1f}s training{_refit_time(summary)}, {summary['parameters']:,} "
        "parameters",
    ]
    if (b := summary.get("baseline")) is not None:
        lines.insert(3, f"baseline   {baseline_line(b)}")
    if (cv := summary.get("cv")) is not None:
        each = " ".join(f"{f['accuracy']:.4f}" for f in cv["folds"])
        lines.insert(3, f"folds      accuracy {cv['accuracy_mean']:.4f} +- {cv['accuracy_std']:.4f} held out "
                        f"({len(cv['folds'])} folds: {each})")  # fmt: skip
    print("\n".join(lines))
    if is_tty():
        print(f"next       attn predict --model {summary['model']} FILE")


def _refit_time(summary: dict) -> str:
    """The refit's seconds beside the first phase's (the line left out the training that made the saved model)."""
    refit = (summary.get("data") or {}).get("refit") if isinstance(summary.get("data"), dict) else None
    return f" + {refit['seconds']:.1f}s refit on train + val" if isinstance(refit, dict) and "seconds" in refit else ""
