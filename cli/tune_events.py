"""attn tune-events"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer

from .common import DeviceOpt, ModelOpt, QuietOpt, ThreadsOpt, f4, fail, handle_errors, set_threads, setup_logging

EPILOG = """\
Examples:

  attn tune-events ../shared/data/fsdd_scenes/events.csv --files ../shared/data/fsdd_scenes/files.csv \\
      -m runs/digits/model.attn --out runs/digits/model-events.attn

  attn tune-events annotations.csv --split val -m model.attn --in-place    # rewrite model.attn itself

Tunes the sound-event post-processing of an already trained audio model on annotated validation
recordings, as `attn train` does with `data.events` (README, "Sound events"): the settings with the
best event-based F1 (sed_eval; `pip install 'attn[events]'`) are stored in the model written to
--out (or, with --in-place, in the model file itself), atomically: the file is complete or
untouched. `attn info` shows them; `attn predict --events` and `attn listen --events` use them.
Tune on validation recordings, never on the ones you report.
"""


@handle_errors
def tune_events_cmd(
    annotations: Annotated[str, typer.Argument(help="Annotations CSV: file,onset,offset,label[,split].")],
    model: ModelOpt = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Write the tuned model here.", show_default=False)
    ] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Store the settings in the model file itself.")] = False,
    files: Annotated[
        str | None,
        typer.Option(
            "--files", help="A CSV (path[,split]) of the recordings, also those with no events.", show_default=False
        ),
    ] = None,  # fmt: skip
    split: Annotated[str | None, typer.Option(help="Only rows of this split (no split column: all rows).")] = "val",
    hop: Annotated[float, typer.Option(min=0.001, help="Seconds between windows.")] = 0.1,
    fmt: Annotated[Literal["table", "json", "jsonl"], typer.Option("--format", "-f")] = "table",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Tune the sound-event post-processing of a trained audio model on annotated recordings."""
    fmt = "json" if fmt == "jsonl" else fmt  # a single JSON line: jsonl too, one word across commands
    import attn

    if (out is None) == (not in_place):
        raise fail("give --out PATH (a tuned copy) or --in-place (rewrite the model file), one of them")
    setup_logging(quiet)
    set_threads(threads)
    m = attn.load(model, device)
    tuned = m.tune_events(annotations, files, split, out=out, hop=hop)
    where = out or str(m.path)
    if fmt == "json":
        print(json.dumps({"model": where, **{k: v for k, v in tuned.items() if k != "timeline"}}))
        return
    t = tuned["tuned_on"]
    print(", ".join(f"{k} {v}" for k, v in tuned["settings"].items()) + f", hop {tuned['hop_seconds']:g} s")
    print(f"event-based F1 {t['event_f1']:.4f}  error rate {f4(t['event_error_rate'])}  on {t['recordings']} "
          f"recordings ({t['reference_events']} reference events)")  # fmt: skip
    print(f"stored in {where}")
