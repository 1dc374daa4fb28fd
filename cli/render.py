"""Rendering records for people (tables) and for scripts (jsonl, csv, json)."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_line(rec: dict[str, Any]) -> str:
    """One JSON record, UTF-8 as written, except a file name's bytes that are not UTF-8 (held as
    lone surrogates, os.fsdecode's way): those are \\u escapes, so the line stays valid UTF-8
    for jq and json parsers, and `os.fsencode(json.loads(line)["input"])` gives the name's bytes."""
    text = json.dumps(rec, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_jsonl(records: Iterable[dict[str, Any]], out=None, on_record=None) -> list[dict[str, Any]]:
    out = out or sys.stdout
    seen = []
    for rec in records:
        out.write(json_line(rec) + "\n")
        out.flush()
        seen.append(_seen(rec))
        if on_record:
            on_record(rec)
    return seen


def write_csv(
    records: Iterable[dict[str, Any]],
    top_k: int,
    out=None,
    on_record=None,
    text: bool = False,
    multi_label: bool = False,
    abstains: bool = False,
    similarity: bool = False,
) -> list[dict[str, Any]]:
    """One row per input (and per frame with --per-frame: rows with start/end set). A multi-label
    model's `labels` cell is a JSON list and its `scores` cell a JSON object (label: score), so
    labels holding spaces, commas or separators read back one way only. `abstains` (a min score
    or a novelty check is in force): a `best_label` column, filled on `unknown` rows;
    `similarity` (a model with a novelty check): each input's similarity to the training data
    and `novel` (true where the check answered `unknown`)."""
    out = out or sys.stdout
    cols = ["input", "text", "label", "score", "truncated", "error"] if text else [
        "input", "label", "score", "start", "end", "error", "warning"]  # fmt: skip
    if multi_label:
        at = cols.index("label")
        cols[at : at + 2] = ["labels", "scores"]
    elif abstains:
        cols.insert(cols.index("score") + 1, "best_label")
    if similarity:
        at = cols.index("score") + 1
        cols[at:at] = ["similarity", "novel"]
    if top_k > 1 and not multi_label:
        cols.insert(cols.index("score") + 1, "top_k")
    w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    seen = []
    for rec in records:
        row = dict(rec)
        if "top_k" in rec:
            row["top_k"] = " ".join(f"{_csv_label(t['label'])}:{t['score']:.4f}" for t in rec["top_k"])
        w.writerow(_json_cells(row))
        for fr in rec.get("frames", []):
            w.writerow(_json_cells({"input": rec["input"], **fr}))
        out.flush()
        seen.append(_seen(rec))
        if on_record:
            on_record(rec)
    return seen


def _json_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A multi-label row's list and mapping cells as JSON text."""
    return {k: json.dumps(v, ensure_ascii=False) if k in ("labels", "scores") else v for k, v in row.items()}


def _csv_label(label: str) -> str:
    """A label in the `top_k` cell ("label:score" pairs, space-separated): one holding a space,
    a colon, a quote or a backslash is written as a JSON string, so the cell splits one way only
    (also with a shell-style splitter such as Python's shlex)."""
    return json.dumps(label, ensure_ascii=False) if re.search(r"[\s:\"'\\]", label) or not label else label


def _seen(rec: dict[str, Any]) -> dict[str, Any]:
    """What the command's summary needs of a record (not the record: memory stays flat)."""
    return {"error": rec.get("error"), "warning": rec.get("warning"), "truncated": rec.get("truncated")}


def print_table(records: Iterable[dict[str, Any]], top_k: int, on_record=None) -> list[dict[str, Any]]:
    from rich.table import Table

    rows = []
    for rec in records:
        rows.append(rec)
        if on_record:
            on_record(rec)
    table = Table(show_edge=False, box=None, header_style="bold")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column("score", justify="right")
    if top_k > 1:
        table.add_column(f"top {top_k}")
    for rec in rows:
        if "error" in rec:
            why = rec["error"].removeprefix(f"{rec['input']}: ")
            table.add_row(_escape(rec["input"]), f"[red]error: {_escape(why)}[/red]", "", *([""] if top_k > 1 else []))
            continue
        extra = [_escape(" ".join(f"{t['label']} {t['score']:.3f}" for t in rec["top_k"]))] if top_k > 1 else []
        label, score = _label_cells(rec)
        if "best_label" in rec:  # an `unknown` answer: which label it would have been, and why not
            why = "unlike the training data" if rec.get("novel") else "score below the minimum"
            label += f" [dim](best: {_escape(str(rec['best_label']))}; {why})[/dim]"
        table.add_row(_escape(rec["input"]), label, score, *extra)
        if "warning" in rec:
            table.add_row("", f"[yellow]warning: {_escape(rec['warning'])}[/yellow]", "", *([""] if top_k > 1 else []))
        for fr in rec.get("frames", []):
            table.add_row(f"  {fr['start']:.2f}-{fr['end']:.2f}s", *_label_cells(fr), *([""] if top_k > 1 else []))
    stdout_console().print(table)
    return rows


def _label_cells(rec: dict[str, Any]) -> tuple[str, str]:
    """(label, score) cells: a multi-label record shows its labels (JSON strings, so a label with
    a comma or space reads as one) and the best of their scores (every score: --format jsonl)."""
    if "labels" not in rec:
        return _escape(str(rec["label"])), f"{rec['score']:.3f}"
    labels = rec["labels"]
    best = max((rec["scores"][lab] for lab in labels), default=None)
    return _escape(", ".join(json.dumps(lab, ensure_ascii=False) for lab in labels) or "(none)"), (
        "" if best is None else f"{best:.3f}"
    )


def _escape(s: str) -> str:
    """A user's string (label, file name, message) as Rich markup that shows it as written."""
    from rich.markup import escape

    return escape(printable(s))


# C0 and C1 control characters but tab and newline: ESC (0x1b) and CSI (0x9b) start terminal
# escape sequences, which a label or file name must not be able to send to the terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(s: str) -> str:
    """`s` for a terminal: control characters shown as \\xNN escapes rather than sent to it."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def baseline_line(b: dict[str, Any]) -> str:
    """The baseline's scores in one line: kind, test (else validation) accuracy and macro-F1."""
    split = "" if "accuracy" in b else "val_"
    if f"{split}accuracy" not in b:
        return f"{b.get('kind')} (no validation or test data)"
    where = "test" if not split else "validation"
    blended = f"; blended into the model with weight {w:.2f}" if (w := b.get("blend_weight")) else ""
    return (f"{b.get('kind')} accuracy {b[split + 'accuracy']:.4f} (macro-F1 {b[split + 'macro_f1']:.4f}, {where}; "
            f"{b.get('seconds', 0):.1f}s){blended}")  # fmt: skip


def stdout_console():
    """Rich on stdout: the terminal's width on a terminal; piped, tables at their natural width
    and lines unwrapped (rich's 80 columns cut labels and broke sentences in files and pipes)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(soft_wrap=True, width=400)


def metrics_table(m: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    head = f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   examples {m['count']}"
    if "window_accuracy" in m:
        head += f"   window accuracy {m['window_accuracy']:.4f} ({m['windows']} windows)"
    if m.get("multi_label"):
        head = (f"macro-F1 {m['macro_f1']:.4f}   micro-F1 {m['micro_f1']:.4f}   macro mAP {m['macro_map']:.4f}   "
                f"exact-set match {m['exact_match']:.4f}   labels per example {m['label_cardinality']:.2f} "
                f"(predicted {m.get('predicted_cardinality', float('nan')):.2f})   examples {m['count']}")  # fmt: skip
    if m.get("data"):  # which data, which split: the table said neither
        head = f"{_escape(str(m['data']))}\n{head}"
    console.print(head)
    if (b := m.get("baseline")) is not None:
        console.print(
            f"baseline {_escape(str(b['kind']))}: accuracy {b['accuracy']:.4f}   macro-F1 {b['macro_f1']:.4f}"
        )
    t = Table(show_edge=False, box=None, header_style="bold")
    multi = bool(m.get("multi_label"))
    cols = ("label", "precision", "recall", "f1", "support") + (("ap", "threshold") if multi else ())
    for c in cols:
        t.add_column(c, justify="left" if c == "label" else "right")
    for lab, v in m["per_class"].items():
        extra = ("-" if v["ap"] is None else f"{v['ap']:.3f}", f"{v['threshold']:.3f}") if multi else ()
        t.add_row(_escape(lab), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", str(v["support"]),
                  *extra)  # fmt: skip
    console.print(t)
    if multi:  # no confusion matrix: an example may carry several labels
        return
    labels = m["labels"]
    c = Table(title="confusion (rows: true, columns: predicted)", show_edge=False, box=None, header_style="bold")
    c.add_column("")
    for lab in labels:
        c.add_column(_escape(str(lab)[:8]), justify="right")  # cut first: a cut escape would be markup again
    for lab, row in zip(labels, m["confusion"], strict=True):
        c.add_row(_escape(lab), *(str(v) if v else "." for v in row))
    console.print(c)
    if m.get("calibration") or m.get("abstention"):
        calibration_lines(console, m)


def calibration_lines(console, m: dict[str, Any]) -> None:
    """ECE before and after temperature scaling, and coverage vs accuracy of the answers."""
    from rich.table import Table

    if (cal := m.get("calibration")) is not None:
        console.print(f"calibration: temperature {cal['temperature']:.3f}   ECE {cal['ece_before']:.4f} -> "
                      f"{cal['ece']:.4f} ({cal['binning']})")  # fmt: skip
        noise = cal.get("ece_if_calibrated") or {}
        if noise.get("median") is not None:
            console.print(f"  a perfectly calibrated model with these scores would show ECE {noise['p5']:.4f}-"
                          f"{noise['p95']:.4f} (5th-95th percentile, median {noise['median']:.4f}) on "
                          f"{noise['clips']} examples")  # fmt: skip
    ab = m.get("abstention") or {}
    if "coverage" in ab:
        acc = "-" if ab["accuracy"] is None else f"{ab['accuracy']:.4f}"
        console.print(f"min score {ab['min_score']:.4f}: answers {ab['coverage']:.1%} ({ab['answered']}), "
                      f"accuracy on those {acc}; the rest are `unknown`")  # fmt: skip
    if ab.get("curve"):
        t = Table(title="coverage vs accuracy", show_edge=False, box=None, header_style="bold")
        for col in ("min score", "coverage", "accuracy"):
            t.add_column(col, justify="right")
        for r in ab["curve"]:
            t.add_row(
                f"{r['min_score']:.2f}",
                f"{r['coverage']:.3f}",
                "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}",
            )
        console.print(t)
