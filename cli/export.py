"""attn export"""

from __future__ import annotations

import json
import os
from typing import Annotated, Literal

import typer

from attn.api import label_list

from .common import (
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    check_out,
    fail,
    handle_errors,
    set_threads,
    setup_logging,
    stderr_console,
)

EPILOG = """\
Examples:

  attn export --out digits.onnx                          # runs/latest, ONNX

  attn export -m runs/trec/model.attn --format torchscript --out trec.pt

  attn export -m runs/digits --json | jq .max_abs_diff   # where it went and how well it matches

The file maps what `attn predict` reads to class probabilities, the front end inside: audio
models take `waveform` (batch, samples) float32 at the model's sample rate, one window per row;
text models take `ids` (batch, tokens) int64 (batch, tokens, 1 + K with hashed n-grams) and
`lengths` (batch,). Labels and front-end settings are in the ONNX metadata (TorchScript: the
extra file attn.json). The file is checked against PyTorch on a batch of another shape before it
is written. ONNX needs pip install 'attn[export]'.
"""


@handle_errors
def export_cmd(
    model: ModelOpt = None,
    fmt: Annotated[
        Literal["onnx", "torchscript"], typer.Option("--format", "-f", help="onnx (onnxruntime) or torchscript.")
    ] = "onnx",
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="File to write. Default: beside the model, model.onnx or model.pt.", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    quiet: QuietOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Export a trained model, front end included, to one ONNX or TorchScript file."""
    check_out(out)
    if out is not None and out.lower().endswith(".attn"):
        raise fail(f"--out {out}: .attn is attn's own model format; an export ends in .onnx or .pt")
    # attn reads a model file by its name: `attn predict -m m.txt` would take an ONNX m.txt for an .attn file
    onnx_name = out is not None and out.lower().endswith(".onnx")
    if out is not None and (fmt == "onnx") != onnx_name and not os.path.isdir(out):  # a folder: check_writable's
        raise fail(f"--out {out}: " + ("an ONNX file's name ends in .onnx" if fmt == "onnx" else
                   "a TorchScript file ending in .onnx would be taken for ONNX: use .pt") +
                   " (attn and its users tell the formats apart by it)")  # fmt: skip
    import attn

    setup_logging(quiet, None if quiet else stderr_console())
    set_threads(threads)  # the export traces and checks the model in torch (~15 s for an encoder)
    res = attn.load(model).export(out, format=fmt).summary()
    if as_json:
        print(json.dumps(res))
        return
    ins = ", ".join(f"{i['name']} {i['dtype']} ({', '.join(i['shape'])})" for i in res["inputs"])
    labels = res["labels"]
    n = len(res["check_shapes"])
    print("\n".join([
        f"wrote        {res['path']} ({res['format']}, {res['bytes'] / 1e6:.1f} MB, {res['seconds']} s)",
        f"inputs       {ins}",
        f"output       probabilities (batch, {len(labels)}): {label_list(labels)}",
        f"parity       max |exported - torch| = {res['max_abs_diff']:.1g} over {n} check inputs of other shapes",
    ]))  # fmt: skip
