"""`attn predict --events` output: one line per event, in five formats.

- table (the default on a terminal): aligned columns start, end, label, score, input
- jsonl: {input, label, start, end, score} (an unreadable file: {input, error})
- csv: input,label,start,end,score,error
- audacity: a label track (File > Import > Labels): start<TAB>end<TAB>label, one input only
- raven: a Raven Pro selection table (tab-separated, one row per event, "Begin Path" names the file)
Errors go to stderr in the two track formats (they have no place for them).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from typing import Any

from .render import json_line

EVENT_FORMATS = ("table", "jsonl", "csv", "audacity", "raven")
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Begin Path", "Annotation", "Score"]  # fmt: skip


def write_events(records: Iterable[dict[str, Any]], fmt: str, high_hz: float, out=None) -> list[dict[str, Any]]:
    """Write each record as it comes (flushed); returns the error records. `high_hz`: the top of
    Raven's selection box (the model's Nyquist frequency)."""
    out = out or sys.stdout
    errors: list[dict[str, Any]] = []
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, ["input", "label", "start", "end", "score", "error"], extrasaction="ignore",
                                lineterminator="\n")  # fmt: skip
        writer.writeheader()
    elif fmt == "raven":
        out.write("\t".join(RAVEN_COLUMNS) + "\n")
    elif fmt == "table":
        out.write(f"{'start':>9}  {'end':>9}  {'label':<12}  {'score':>6}  input\n")
    n = 0
    for rec in records:
        if rec.get("error"):
            errors.append(rec)
            if fmt in ("audacity", "raven"):
                print(f"error: {rec['error']}", file=sys.stderr)
                continue
        if fmt == "table":
            if rec.get("error"):
                out.write(f"{'':>9}  {'':>9}  {'ERROR':<12}  {'':>6}  {rec['error']}\n")
            else:
                out.write(f"{rec['start']:>9.3f}  {rec['end']:>9.3f}  {_cell(rec['label']):<12}  "
                          f"{rec['score']:>6.4f}  {_cell(rec['input'])}\n")  # fmt: skip
        elif fmt == "jsonl":
            out.write(json_line(rec) + "\n")
        elif writer is not None:
            writer.writerow(rec)
        elif fmt == "audacity":
            out.write(f"{rec['start']:.3f}\t{rec['end']:.3f}\t{_cell(rec['label'])}\n")
        else:
            n += 1
            row = [n, "Spectrogram 1", 1, f"{rec['start']:.3f}", f"{rec['end']:.3f}", 0, f"{high_hz:g}",
                   _cell(rec["input"]), _cell(rec["label"]), rec["score"]]  # fmt: skip
            out.write("\t".join(map(str, row)) + "\n")
        out.flush()
    return errors


def _cell(value: str) -> str:
    """A tab or a line break inside a label or path would split the row: written as a space."""
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
