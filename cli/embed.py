"""attn embed"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DeviceOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    audio_paths,
    fail,
    handle_errors,
    no_inputs,
    set_threads,
    setup_logging,
)

EPILOG = """\
Examples:

  attn embed -m runs/sst2/model.attn --text "a gripping, funny film" --text "dull"

  attn embed -m runs/digits recordings/ --out vectors.npy          # (files, D) float32

  attn embed -m runs/genre song.wav --per-window > windows.jsonl    # one vector per window too

  cat reviews.txt | attn embed -m runs/sst2 - --out reviews.npy

The vector each prediction rests on: the network's last layer before its output (for a model
over a pretrained encoder, the pooled encoder states), for texts, clips or windows framed exactly
as `attn predict` frames them; a clip's vector is the mean of all its windows' (--per-window marks
the quiet ones predict's label leaves out), with predict's warnings. JSON lines on stdout
({"input", "embedding", ...}, an input that cannot be read gets "error"), or --out FILE: .jsonl,
or .npy with one row per input in order (a row of NaN for an input that failed, exit 1).
"""


@handle_errors
def embed_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Audio: files, folders or - (paths on stdin). Text: files with one text per line, "
            "or - for lines on stdin.",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="A text to embed (repeatable).", show_default=False)
    ] = None,
    model: ModelOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to FILE.npy or FILE.jsonl instead of stdout.")
    ] = None,
    per_window: Annotated[
        bool, typer.Option("--per-window", help="Audio: also each window's vector (.jsonl; .npy: one file's windows).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per model call.")] = 64,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write the vector (embedding) a model computes for each audio file or text."""
    import attn.api

    if not inputs and not text:
        raise fail("no inputs: give files or folders, - to read from stdin, or --text for a text model")
    suffix = out.suffix.lower() if out is not None else ".jsonl"
    if suffix not in (".npy", ".jsonl"):
        raise fail(f"--out {out}: write a .npy or a .jsonl file")
    setup_logging(quiet)
    m = attn.load(model, device)
    set_threads(threads)
    if m.modality == "text":
        from attn.api import text_inputs

        if per_window:
            raise fail("--per-window is for audio models; a text has one vector")
        items = text_inputs(text or [], inputs or [], column=m.recipe.data.text_column)
    else:
        items = audio_paths(m, inputs, text)
        if suffix == ".npy" and per_window and len(items) != 1:
            raise fail(f"--per-window to .npy writes one recording's windows (W, D), and {len(items)} files' windows "
                       "do not fit one array (their counts can differ): write them to .jsonl")  # fmt: skip
    records = m.embed_iter(items, per_window=per_window, batch_size=batch_size)
    if out is not None:
        seen = attn.api.write_embeddings(records, out)
    else:
        seen = _write_jsonl(records)
    if not seen:
        raise no_inputs(inputs)
    failed = [r for r in seen if r.get("error")]
    for r in failed if out is not None else []:
        print(f"error: {r['error']}", file=sys.stderr)
    if out is not None and not quiet:  # a log line: -q keeps stderr to errors
        print(f"attn: wrote {out} ({len(seen) - len(failed)} of {len(seen)} inputs)", file=sys.stderr)
    if failed:
        print(f"attn: {len(failed)} of {len(seen)} input(s) failed", file=sys.stderr)
        raise typer.Exit(1)


def _write_jsonl(records) -> list[dict]:
    """Records to stdout, as each input is done."""
    from . import render

    return [{"error": r.get("error")} for r in render.write_jsonl(records)]
