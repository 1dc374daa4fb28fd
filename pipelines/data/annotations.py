"""Annotated recordings for sound events: an annotations CSV (`file,onset,offset,label`, an optional
`split` column; `path` may stand for `file`) and an optional files CSV (`path[,split]`) naming
recordings too, including those with no events at all. Paths are relative to the CSV's folder.

Bad rows never sink the rest: onset >= offset, times that are not finite, a duplicate, an
annotated file that is missing: a one-line warning naming the CSV, its line and the problem, and
the row (or file) is left out; one past the recording's end is left out or cut there (`_within`).
Overlapping annotations of one label in one file are merged (warned: the metrics would count two
events where a listener hears one). Labels the model does not know are warned about by the caller
(`unknown_labels`): they stay in the reference, where they count as missed.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from attn.errors import InputError

log = logging.getLogger("attn")


@dataclass(frozen=True)
class Annotation:
    label: str
    onset: float
    offset: float


@dataclass
class Annotated:
    """Recordings (absolute paths, in order) and their reference events (sorted by onset)."""

    files: list[str] = field(default_factory=list)
    events: dict[str, list[Annotation]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({a.label for evs in self.events.values() for a in evs})


def _rows(path: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            sample = f.read(4096)
            f.seek(0)
            delim = "\t" if "\t" in sample.split("\n", 1)[0] else ","  # a TSV (Raven tables are)
            return list(csv.DictReader(f, delimiter=delim))
    except FileNotFoundError:
        raise InputError(f"{path}: annotations file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read ({e})") from None


def _file_column(path: str, row: dict[str, str]) -> str:
    for key in ("file", "path", "filename"):
        if key in row:
            return key
    raise InputError(f"{path}: needs a file (or path) column; has {', '.join(row)}")


def load_annotated(annotations: str, files: str | None = None, split: str | None = None) -> Annotated:
    """Read the CSVs (see the module docstring); `split`: keep only rows whose split column says so."""
    out = Annotated()
    base = Path(annotations).parent
    seen: set[tuple[str, str, float, float]] = set()
    names: dict[str, None] = {}
    if files is not None:
        frows = _rows(files)
        if frows:
            key = _file_column(files, frows[0])
            if split is not None and "split" not in frows[0]:
                out.warnings.append(f"{files}: no split column: all its {len(frows)} recordings are scored in "
                                    f"split {split!r} (one with no {split} annotation has no events)")  # fmt: skip
            for row in frows:
                if split is None or row.get("split", split) == split:
                    names[_name(Path(files).parent, row[key])] = None
    rows = _rows(annotations)
    if rows:
        key = _file_column(annotations, rows[0])
        missing = [c for c in ("onset", "offset", "label") if c not in rows[0]]
        if missing:
            raise InputError(f"{annotations}: missing column(s) {', '.join(missing)} (needs file,onset,offset,label)")
    for line, row in enumerate(rows, start=2):
        if split is not None and row.get("split", split) != split:
            continue
        where = f"{annotations}:{line}"
        try:
            onset, offset = float(row["onset"]), float(row["offset"])
        except (TypeError, ValueError):
            onset = offset = math.nan
        if not (math.isfinite(onset) and math.isfinite(offset)):
            out.warnings.append(f"{where}: onset/offset are not finite numbers ({row['onset']!r}, {row['offset']!r}); "
                                "skipped")  # fmt: skip
            continue
        name = _name(base, row[key])
        label = (row["label"] or "").strip()
        if not label:
            out.warnings.append(f"{where}: empty label; skipped")
            continue
        if not onset < offset or onset < 0:
            out.warnings.append(f"{where}: onset {onset:g} s is not before offset {offset:g} s; skipped")
            continue
        if (name, label, onset, offset) in seen:
            out.warnings.append(f"{where}: duplicate of an earlier annotation; skipped")
            continue
        seen.add((name, label, onset, offset))
        names[name] = None
        out.events.setdefault(name, []).append(Annotation(label, onset, offset))
    for name in list(names):
        if not os.path.isfile(name):
            out.warnings.append(f"{name}: annotated recording not found; its annotations are left out")
            out.events.pop(name, None)
            del names[name]
    for name, evs in out.events.items():
        out.events[name] = _merge_overlaps(name, _within(name, evs, out.warnings), out.warnings)
    out.files = list(names)
    if not out.files:
        gone = [
            w.split(": annotated recording not found")[0] for w in out.warnings if "annotated recording not found" in w
        ]
        why = f" ({len(gone)} annotated recording(s) not found, e.g. {gone[0]})" if gone else ""
        raise InputError(
            f"{annotations}: no annotated recordings found" + (f" in split {split!r}" if split else "") + why
        )
    for w in out.warnings:
        log.warning(w)
    return out


def _name(base: Path, cell: str) -> str:
    """A recording's key: its absolute, normalised path, so `audio/a.wav` in a files CSV and
    `/data/audio/a.wav` in the annotations (or `./a.wav` and `a.wav`) are one recording, not two."""
    return os.path.abspath(base / cell)


END_SLACK = 0.5  # seconds an annotation may run past the recording's end (rounding, a header's estimate)


def _within(name: str, evs: list[Annotation], warnings: list[str]) -> list[Annotation]:
    """Annotations inside the recording: one that starts after its end is left out, one that runs
    past it is cut at the end, each warned (times in milliseconds, or the wrong file, look like
    this; an offset of 1e12 s would have the scorer allocate terabytes)."""
    from attn.features.audio import audio_info

    try:
        seconds = audio_info(name).seconds
    except InputError:
        return evs  # unreadable: the scoring lists it as skipped
    out = []
    for a in evs:
        if a.onset >= seconds:
            warnings.append(f"{name}: {a.label!r} annotation at {a.onset:g}-{a.offset:g} s starts after the "
                            f"recording ends ({seconds:.2f} s; times are in seconds); left out")  # fmt: skip
        elif a.offset > seconds + END_SLACK:
            warnings.append(f"{name}: {a.label!r} annotation at {a.onset:g}-{a.offset:g} s runs past the "
                            f"recording's end ({seconds:.2f} s); cut there")  # fmt: skip
            out.append(Annotation(a.label, a.onset, seconds))
        else:
            out.append(a)
    return out


def _merge_overlaps(name: str, evs: list[Annotation], warnings: list[str]) -> list[Annotation]:
    """One label's overlapping annotations in a file become one (other labels may overlap)."""
    out: list[Annotation] = []
    for a in sorted(evs, key=lambda a: (a.label, a.onset)):
        last = out[-1] if out else None
        if last is not None and last.label == a.label and a.onset < last.offset:
            warnings.append(f"{name}: overlapping {a.label!r} annotations at {last.onset:g}-{last.offset:g} s and "
                            f"{a.onset:g}-{a.offset:g} s; merged")  # fmt: skip
            out[-1] = Annotation(a.label, last.onset, max(last.offset, a.offset))
        else:
            out.append(a)
    return sorted(out, key=lambda a: (a.onset, a.label))


def unknown_labels(data: Annotated, known: list[str]) -> list[str]:
    """Reference labels the model cannot predict (each warned once): they count as missed."""
    unknown = sorted(set(data.labels) - set(known))
    if unknown:
        log.warning(f"annotations hold label(s) the model does not know: {', '.join(unknown)} (counted as missed)")
    return unknown
