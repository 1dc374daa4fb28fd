"""attn evaluate"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    SetOpt,
    ThreadsOpt,
    ThresholdOpt,
    f4,
    fail,
    handle_errors,
    recipe_opt,
    set_threads,
    setup_logging,
    stderr_console,
)

EPILOG = """\
Examples:

  attn evaluate                                   # runs/latest on its recipe's test split

  attn evaluate ../shared/data/fsdd/labels.csv --split test --format json

  attn evaluate --model runs/genre/model.attn my_music/   # folder per class

  attn evaluate --recipe recipes/digits.yaml --set data.root=/other/copy

  attn evaluate --events ../shared/data/fsdd_scenes/events.csv --split test --format json

--events ANNOTATIONS.csv (file,onset,offset,label[,split]; --files FILES.csv adds recordings with no
events): sed_eval's event-based F1 and error rate (onset collar 200 ms, offset collar the larger of
200 ms and half the event's length) and segment-based F1 (1 s segments).

JSON output has the keys of metrics.json: accuracy, macro_f1, per_class, confusion, labels (a multi-label
model: micro_f1, macro_map, exact_match, label_cardinality, predicted_cardinality instead of confusion).
"""


@handle_errors
def evaluate_cmd(
    data: Annotated[
        str | None,
        typer.Argument(
            help="Folder per class, or a CSV/TSV/JSONL manifest with path and "
            "label columns. Default: the test split of the model's recipe.",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    recipe: recipe_opt("Evaluate on this recipe's data.") = None,
    set_: SetOpt = None,
    split: Annotated[
        Literal["train", "val", "test"] | None,
        typer.Option(help="Default: test for recipes, every row for DATA.", show_default=False),
    ] = None,
    fmt: Annotated[Literal["table", "json", "jsonl"], typer.Option("--format", "-f")] = "table",
    events: Annotated[
        str | None,
        typer.Option("--events", help="Score sound events against this annotations CSV.", show_default=False),
    ] = None,
    files: Annotated[
        str | None,
        typer.Option(
            "--files",
            help="--events: a CSV (path[,split]) of the recordings, also those with no events.",
            show_default=False,
        ),
    ] = None,
    aggregate: Annotated[
        Literal["mean", "max", "vote"], typer.Option(help="Combine window predictions per clip.")
    ] = "mean",
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            help="Report coverage and accuracy of the answers scoring at least this "
            "(0-1; default: the model's stored min score).",
            show_default=False,
        ),
    ] = None,
    threshold: ThresholdOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained model on labelled data: accuracy, macro-F1, per-class metrics, confusion."""
    fmt = "json" if fmt == "jsonl" else fmt  # a single JSON line: jsonl too, one word across commands
    import attn

    if data is not None and recipe is not None:
        raise fail("give DATA or --recipe, not both")
    setup_logging(quiet, None if quiet else stderr_console())
    set_threads(threads)
    from attn.api import load_recipe

    if events is not None:
        if set_:  # accepted and ignored: the recordings and labels come from the annotations
            raise fail("--set is for DATA or --recipe; --events takes its recordings from the annotations")
        if data is not None or recipe is not None:
            raise fail("--events takes its recordings from the annotations: give no DATA or --recipe")
        return _events(attn.load(model, device), events, files, split, fmt)
    if files is not None:
        raise fail("--files is for --events")
    r = load_recipe(recipe, list(set_ or [])) if recipe else None  # a bad recipe fails before the model loads
    # without --recipe, --set changes the model's stored recipe: how DATA's columns are named, or where its data is
    metrics = attn.evaluate(attn.load(model, device), data=data, recipe=r, overrides=[] if recipe else list(set_ or []),
                            split=split, aggregate=aggregate, min_score=min_score, threshold=threshold)  # fmt: skip
    if fmt == "json":
        print(json.dumps(metrics))
    else:
        from .render import metrics_table

        metrics_table(metrics)
    if metrics.get("skipped"):
        raise typer.Exit(1)


def _events(m, annotations: str, files: str | None, split: str | None, fmt: str) -> None:
    metrics = m.evaluate_events(annotations, files, split)
    if fmt == "json":
        print(json.dumps(metrics))
    else:
        print(
            f"event-based  F1 {metrics['event_f1']:.4f}  error rate {f4(metrics['event_error_rate'])}  "
            f"(precision {metrics['event_precision']:.4f}, recall {metrics['event_recall']:.4f}; "
            f"collars: onset 200 ms, offset max(200 ms, half the event))"
        )
        print(f"segment-based F1 {metrics['segment_f1']:.4f}  error rate {f4(metrics['segment_error_rate'])}  (1 s)")
        print(
            f"{metrics['reference_events']} reference and {metrics['estimated_events']} estimated events "
            f"in {metrics['recordings']} recording{'' if metrics['recordings'] == 1 else 's'}"
            + (f"; {len(metrics['skipped'])} skipped (unreadable)" if metrics["skipped"] else "")
        )
    if metrics["skipped"]:
        raise typer.Exit(1)
