"""attn explain"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    audio_paths,
    check_out,
    fail,
    handle_errors,
    is_tty,
    no_inputs,
    set_threads,
    setup_logging,
)
from .render import json_line

EPILOG = """\
Examples:

  attn explain -m runs/trec_transformer --text "How far is it from Denver to Aspen?"   # tokens shaded

  attn explain -m runs/trec_transformer questions.txt --format json | jq -c '[.tokens, .weights]'

  attn explain clip.wav --out explain/          # one PNG per input: the log-mel with the weights over it

Transformers: attention rollout (Abnar & Zuidema 2020) from the class token (or the pooled
vector) back to the input tokens, frames or patches; the JSON adds "layers", the class token's
attention in each layer and head. Other families (cnn, cnn1d, wavenet): occlusion (each
stretch of the input replaced by its mean; the fall in the predicted class's log-probability is
its weight). Weights are >= 0 and sum to 1 over the input. A recording longer than one window:
the window that scores the file's label highest.
"""


@handle_errors
def explain_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Audio files (or folders), or text files with one text per line; - reads stdin.", show_default=False
        ),  # fmt: skip
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", "-t", help="A text to explain (repeatable; text models).", show_default=False),
    ] = None,
    model: ModelOpt = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write one PNG per input into this folder.", show_default=False)
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="Explain this label instead of the top-scoring one (multi-label models: any label, by "
            'its own sigmoid score; the records list the predicted ones under "labels").',
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        Literal["text", "json", "jsonl"] | None,
        typer.Option(
            "--format",
            "-f",
            help="text: shaded tokens / a weight curve; json: one object per line with "
            "the weights (jsonl: the same). Default: text on a terminal, json otherwise.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Show which tokens, frames or patches a model's prediction rests on."""
    check_out(out)
    import attn

    if not inputs and not text:
        raise fail("no inputs: give audio files, text files, - for stdin, or --text for a text model")
    fmt = "json" if fmt == "jsonl" else fmt or ("text" if is_tty() else "json")  # one word across commands
    setup_logging(quiet)
    set_threads(threads)
    m = attn.load(model, device)
    if m.modality == "text":
        from attn.api import text_inputs

        items: Any = list(text_inputs(text or [], inputs or [], column=m.recipe.data.text_column))
    else:
        items = audio_paths(m, inputs, text)
    if not items:
        raise no_inputs(inputs)
    failed = warned = 0
    console = None
    for rec in m.explain_iter(items, out=out, label=label):
        failed += "error" in rec
        warned += "warning" in rec
        if fmt == "json":
            print(json_line(rec), flush=True)
            continue
        if console is None:
            from rich.console import Console

            console = Console(highlight=False)
        show(console, rec)
    if warned:  # as `attn predict` says it
        print(f'attn: {warned} of {len(items)} input(s) have a warning (see their "warning" field)', file=sys.stderr)
    if failed:
        print(f"attn: {failed} of {len(items)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


BARS = " ▁▂▃▄▅▆▇█"


def show(console, rec: dict[str, Any]) -> None:
    """One input for a person: text tokens on backgrounds as strong as their weights; audio a
    sparkline of the weights over the window and where the peak is."""
    from rich.text import Text

    from .render import printable

    if "error" in rec:
        why = rec["error"].removeprefix(rec["input"] + ": ")
        console.print(Text(printable(f"{rec['input']}: error: {why}"), style="red"))
        return
    head = Text.assemble((printable(f"{rec['label']} {rec['score']:.3f}"), "bold"), "  ")
    w = rec["weights"]
    top = max(w) if w else 1.0
    if "tokens" in rec:
        line = Text()
        for tok, x in zip(rec["tokens"], w, strict=True):
            level = x / top if top > 0 else 0.0
            line.append(printable(tok), style=_shade(level))
            line.append(" ")
        console.print(head + line)
        _notes(console, rec)
        return
    spark = "".join(BARS[min(len(BARS) - 1, round(x / top * (len(BARS) - 1)))] if top > 0 else " " for x in w)
    peak = rec["positions"][max(range(len(w)), key=w.__getitem__)]
    console.print(head + Text(printable(rec["input"])))
    console.print(Text(f"  {rec['window'][0]:.2f}s |", style="dim") + Text(spark, style="dark_orange")
                  + Text(f"| {rec['window'][1]:.2f}s  peak {peak[0]:.2f}-{peak[1]:.2f}s ({rec['method']})",
                         style="dim"))  # fmt: skip
    _notes(console, rec)


def _notes(console, rec: dict[str, Any]) -> None:
    """The record's warning and the path of its PNG (--out), under it."""
    from rich.text import Text

    from .render import printable

    if "warning" in rec:
        console.print(Text(printable(f"  warning: {rec['warning']}"), style="yellow"), soft_wrap=True)
    if "image" in rec:  # unwrapped: a path to copy
        console.print(Text(printable(f"  {rec['image']}"), style="dim"), soft_wrap=True)


def _shade(level: float) -> str:
    """A background from none (weight 0) to strong orange (the largest weight)."""
    r, g, b = 255, round(255 - 150 * level), round(255 - 255 * level)
    fg = "white" if level > 0.6 else "black"
    return f"{fg} on rgb({r},{g},{b})"
