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

JSON output has the keys of metrics.json: accuracy, macro_f1, per_class, confusion, labels.
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
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", "-f")] = "table",
    aggregate: Annotated[
        Literal["mean", "max", "vote"], typer.Option(help="Combine window predictions per clip.")
    ] = "mean",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score a trained model on labelled data: accuracy, macro-F1, per-class metrics, confusion."""
    import attn

    if data is not None and recipe is not None:
        raise fail("give DATA or --recipe, not both")
    if set_ and recipe is None:
        raise fail("--set needs --recipe")
    setup_logging(quiet, None if quiet else stderr_console())
    set_threads(threads)
    from attn.pipelines.recipe.load import load_recipe

    r = load_recipe(recipe, list(set_ or [])) if recipe else None  # a bad recipe fails before the model loads
    metrics = attn.evaluate(attn.load(model, device), data=data, recipe=r, split=split, aggregate=aggregate)
    if fmt == "json":
        print(json.dumps(metrics))
    else:
        from .render import metrics_table

        metrics_table(metrics)
    if metrics.get("skipped"):
        raise typer.Exit(1)
