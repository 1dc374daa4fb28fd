"""Data sources: list labelled items (folder per class, manifests, synthetic) and split them.
Items are cheap records; audio is decoded only by `clips.load_clips`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from attn.errors import ConfigError, InputError

from ..recipe.builtin import check_placeholders
from ..recipe.config import DataConfig
from .dedupe import one_row_per_file
from .folders import audio_files, cannot_read, hidden, unread_audio, unread_note
from .items import Item, clean_label

log = logging.getLogger("attn")

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


# -- listing ------------------------------------------------------------------------------------


def list_items(cfg: DataConfig, modality: str = "audio") -> list[Item]:
    """Every item the recipe's data section names, with splits where the source gives them."""
    check_placeholders(cfg)
    if cfg.synthetic is not None:
        return [
            Item(f"synthetic/{kind}/{i:04d}", kind, None, "synthetic")
            for kind in cfg.synthetic.classes
            for i in range(cfg.synthetic.per_class)
        ]
    if cfg.manifest is not None:
        items = read_manifest(cfg.manifest, cfg, modality, base=cfg.root)
        return one_row_per_file(items) if modality == "audio" else items
    if cfg.train is not None:
        items = []
        for split in SPLITS:
            path = getattr(cfg, split)
            if path is not None and Path(path).is_dir():
                raise ConfigError(f"data.{split}: {path}: a folder; data.{split} takes a manifest file (CSV/TSV/JSONL"
                                  f"{' with path,label columns' if modality == 'audio' else ''})")  # fmt: skip
            if path is not None and split != "train" and not Path(path).is_file():
                # e.g. a general recipe's placeholder test file, left in place when only data.train was set
                raise ConfigError(f"data.{split}: {path}: file not found (set data.{split}=FILE, or data.{split}=null "
                                  f"to hold out data.{split}_fraction of data.train)")  # fmt: skip
            if path is not None:
                rows = read_manifest(path, cfg, modality, base=cfg.root, split_column=False)
                items += [replace(it, split=split) for it in rows]
        return one_row_per_file(items) if modality == "audio" else items
    assert cfg.root is not None
    return one_row_per_file(scan_folder(cfg.root, cfg.extensions))


def scan_folder(root: str, extensions: tuple[str, ...]) -> list[Item]:
    """`root/<label>/**/<file>` for files with one of `extensions`, sorted."""
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{root}: data folder not found")
    items = []
    try:
        label_dirs = sorted(p for p in base.iterdir() if p.is_dir() and not hidden(p.name))
    except OSError as e:
        raise cannot_read(e) from None
    for label_dir in label_dirs:
        label = clean_label(label_dir.name)
        found = [Item(str(f), label, None, str(f)) for f in audio_files(label_dir, extensions)]
        unread = unread_audio(label_dir, extensions)
        if unread:  # e.g. a class of phone recordings (.m4a): it was left out without a word
            log.warning("%s: %s%s", label_dir, unread_note(unread),
                        "" if found else f"; class {label!r} is left out: it has no audio attn reads")  # fmt: skip
        items += found
    if not items:
        raise ConfigError(
            f"{root}: no audio found (expected class folders like {root}/<label>/*"
            f"{extensions[0] if extensions else '.wav'})"
        )
    return items


def read_table(path: str) -> tuple[list[dict[str, str]], list[int], list[str]]:
    """Rows of a CSV/TSV/JSONL file as dicts, their line numbers, and the column names."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: manifest not found")
    try:
        data = p.read_bytes()
    except OSError as e:  # was an internal error (PermissionError)
        raise InputError(f"{path}: cannot read ({(e.strerror or str(e)).lower()})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})") from None
    suffix = p.suffix.lower()
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    if suffix in (".jsonl", ".ndjson", ".json"):
        columns: list[str] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if n == 1 and line.strip() == "[":
                    raise InputError(f"{path}: a JSON array; attn reads JSON Lines (one object per line)") from None
                raise InputError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{n}: expected a JSON object per line")
            rows.append({k: _cell(v) for k, v in obj.items()})
            lines.append(n)
            columns += [k for k in obj if k not in columns]
        return rows, lines, columns
    if suffix != ".tsv":
        return _delimited(path, text, ",", csv.QUOTE_MINIMAL)
    try:  # TSV: quotes as a spreadsheet writes them, when they parse strictly
        return _delimited(path, text, "\t", csv.QUOTE_MINIMAL, strict=True)
    except _Unquoted:
        # A text that merely starts with `"` ("Best movie ever!!! ...) opened a quoted field that
        # swallowed the rows after it, tabs, labels and all: TSV rows are lines.
        log.warning("%s: quotes that do not pair up as quoted fields: read without quoting, one row per line", path)
        return _delimited(path, text, "\t", csv.QUOTE_NONE)


class _Unquoted(Exception):
    pass


# Python's csv module refuses a field over 131,072 characters ("field larger than field limit"),
# a long document in a text manifest; texts are cut to max_len later, and said so.
FIELD_LIMIT = 2**31 - 1


def _delimited(path: str, text: str, delimiter: str, quoting: int, strict: bool = False):
    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting, strict=strict)
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: manifest is empty")
        header = [h.strip() for h in header]
        start = 2
        for rec in reader:
            first, start = start, reader.line_num + 1  # a quoted row spans lines: name its first
            if not any(c.strip() for c in rec):
                continue
            if len(rec) != len(header):
                if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
                    raise InputError(f"{path}: the header is one column ({header[0][:60]!r}): attn reads "
                                     "comma-separated CSV (tab-separated as .tsv)")  # fmt: skip
                raise InputError(f"{path}:{first}: expected {len(header)} columns, found {len(rec)}")
            if strict and any("\t" in c and "\n" in c for c in rec):
                raise _Unquoted  # a "field" holding whole rows: quotes that paired up by accident
            rows.append(dict(zip(header, rec, strict=True)))
            lines.append(first)
    except csv.Error as e:
        if strict:
            raise _Unquoted from None
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows, lines, header


def read_manifest(
    path: str,
    cfg: DataConfig,
    modality: str,
    base: str | None = None,
    split_column: bool = True,
    need_label: bool = True,
) -> list[Item]:
    """Items from a manifest. Audio paths are relative to `base` or the manifest's folder."""
    rows, lines, columns = read_table(path)
    key = cfg.path_column if modality == "audio" else cfg.text_column
    missing = [c for c in (key, cfg.label_column if need_label else None) if c and c not in columns]
    if missing:
        raise ConfigError(
            f"{path}: column {missing[0]!r} not found (columns: {', '.join(columns)}); "
            f"set data.{'path' if key == cfg.path_column and modality == 'audio' else 'text'}_column"
            f" / data.label_column"
        )
    use_split = split_column and cfg.split_column in columns
    root = Path(base) if base else Path(path).resolve().parent
    # a missing root only matters to a relative path (every file would be "not found" in it); a
    # manifest of absolute paths beside a stale root (a moved recipe, a stored one) reads as before
    missing_root = bool(base) and modality == "audio" and not root.is_dir()
    items = []
    skipped = 0
    for row, line in zip(rows, lines, strict=True):
        where = f"{path}:{line}"
        value = row.get(key, "")
        label = clean_label(row.get(cfg.label_column, "")) if cfg.label_column in columns else None
        if need_label and not label:
            raise InputError(f"{where}: empty {cfg.label_column!r}")
        if modality == "audio":
            value = value.strip()
            if not value:
                raise InputError(f"{where}: empty {key!r}")
            if not os.path.isabs(value) and missing_root:
                raise ConfigError(f"data.root: {base}: folder not found (beside a manifest, data.root is the folder "
                                  "its relative paths start from; data.root=null reads them from the manifest's "
                                  "folder)")  # fmt: skip
            value = str(root / value) if not os.path.isabs(value) else value
        elif not value.strip():
            skipped += 1
            continue
        split = None
        if use_split:
            raw = row.get(cfg.split_column, "").strip().lower()
            if raw:
                if raw not in _SPLIT_ALIASES:
                    raise InputError(f"{where}: unknown split {raw!r} (use train, val or test)")
                split = _SPLIT_ALIASES[raw]
        fold = None
        if cfg.fold_column:
            if cfg.fold_column not in columns:
                raise ConfigError(
                    f"{path}: data.fold_column {cfg.fold_column!r} not found (columns: {', '.join(columns)})"
                )
            fold = row.get(cfg.fold_column, "").strip() or None
        items.append(Item(value, label, split, where, fold))
    if cfg.multi_label and cfg.label_column in columns:
        items = _with_label_sets(items, cfg, path)
    elif cfg.label_column in columns:
        from .labelsets import single_labels

        items = single_labels(items, path)
    if skipped:
        log.warning("%s: skipped %d row(s) with empty %r", path, skipped, key)
    if not items:
        raise InputError(f"{path}: no usable rows")
    return items


def _with_label_sets(items: list[Item], cfg: DataConfig, path: str) -> list[Item]:
    """data.multi_label: each item's label cell parsed into its label set (multilabel.py)."""
    from .labelsets import check_sep, detect_sep, parse_cell

    cells = [it.label or "" for it in items]
    if cfg.label_sep == "auto":
        sep = detect_sep(cells, path)
    else:
        sep = cfg.label_sep
        check_sep(cells, sep, path)
    out = []
    for it in items:
        labels = parse_cell(it.label, sep, it.where) if it.label else None
        out.append(replace(it, label=None if labels is None else ";".join(labels), labels=labels))
    return out


# -- splits -------------------------------------------------------------------------------------


def split_items(items: list[Item], cfg: DataConfig) -> dict[str, list[Item]]:
    """Train/val/test. Splits the source gives are kept; missing val and test are carved from
    train (test only when the source names no split at all), stratified by label and seeded."""
    given = {it.split for it in items if it.split}
    splits: dict[str, list[Item]] = {s: [it for it in items if it.split == s] for s in SPLITS}
    pool = [it for it in items if it.split in (None, "train")]
    carve_test = "test" not in given
    carve_val = "val" not in given
    val_n, test_n = (cfg.val_fraction if carve_val else 0.0), (cfg.test_fraction if carve_test else 0.0)
    if (carve_val or carve_test) and pool:
        by_label: dict[str | None, list[Item]] = defaultdict(list)
        key = _strata(pool)
        for it in sorted(pool, key=lambda it: it.source):
            by_label[key(it)].append(it)
        rng = np.random.default_rng(cfg.split_seed)
        train, val, test, unheld = [], [], [], []
        for label in sorted(by_label, key=str):
            group = by_label[label]
            order = rng.permutation(len(group))
            n = len(group)
            nt, nv = round(n * test_n), round(n * val_n)
            while nt + nv >= n and (nt or nv):  # keep at least one training example per class
                if nt >= nv:
                    nt -= 1
                else:
                    nv -= 1
            if (val_n and not nv) or (test_n and not nt):
                unheld.append(f"{label!r} ({n} example{'s' if n != 1 else ''})")
            held = _by_copies([group[i] for i in order], nt, nv)
            test, val, train = test + held[0], val + held[1], train + held[2]
        if 0 < len(unheld) < len(by_label):  # some classes round to none held out (all: an empty split, said elsewhere)
            log.warning("%d of %d classes have too few examples to hold one out for %s: %s%s; the "
                        "scores say nothing about them there", len(unheld), len(by_label),
                        "val or test" if val_n and test_n else "val" if val_n else "test", ", ".join(unheld[:5]),
                        " ..." if len(unheld) > 5 else "")  # fmt: skip
        elif unheld and not val and not test:  # every class rounds to none held out
            _say_nothing_held_out(by_label, val_n, test_n, given)
        splits["train"] = [replace(it, split="train") for it in train]
        if carve_val:
            splits["val"] = [replace(it, split="val") for it in val]
        if carve_test:
            splits["test"] = [replace(it, split="test") for it in test]
    if not splits["train"]:
        raise ConfigError("data: the training split is empty")
    return splits


def _by_copies(picked: list[Item], nt: int, nv: int) -> tuple[list[Item], list[Item], list[Item]]:
    """(test, val, train) of one class's items in their drawn order: the first `nt` to test, the
    next `nv` to val, the rest to train, as drawn, except that copies (the same text, case and
    spacing aside; a file listed twice) go where their first one goes. A training set of every
    row 3 times left 2055 of 2076 validation texts copies of training ones, and validation (1.0)
    then chose the epoch, the blend and the calibration. Without copies the draw is unchanged."""
    units: dict[str, list[Item]] = {}
    for it in picked:
        units.setdefault(" ".join(it.source.split()).casefold(), []).append(it)
    out: tuple[list[Item], list[Item], list[Item]] = ([], [], [])
    if len(units) == 1:  # one text, however many copies: it is the class's training example
        return [], [], list(picked)
    last = None
    for members in units.values():
        last = 0 if len(out[0]) < nt else 1 if len(out[1]) < nv else 2
        out[last].extend(members)
    if not out[2] and last is not None and last < 2:  # keep one training example per class
        moved = list(units.values())[-1]
        del out[last][-len(moved) :]
        out[2].extend(moved)
    return out


def _say_nothing_held_out(by_label: dict, val_n: float, test_n: float, given: set) -> None:
    """Every class too small to hold one example out for the splits carved from train: said at the
    start (it was said only at the end), naming what is lost and only the splits that are missing."""
    most = max(len(g) for g in by_label.values())
    missing = [s for s, share in (("val", val_n), ("test", test_n)) if share and s not in given]
    if not missing:
        return
    lost = {"val": "no early stopping on validation, no blend, calibration or thresholds",
            "test": "no test scores"}  # fmt: skip
    shares = " and ".join(f"{s}_fraction {v:g}" for s, v in (("val", val_n), ("test", test_n)) if v)
    files = " / ".join(f"data.{s}" for s in missing) + " files"
    log.warning("every class has too few examples to hold one out (at most %d each, at %s): no %s split, so %s; "
                "give %s or a split column", most, shares, " or ".join(missing),
                ", and ".join(lost[s] for s in missing), files)  # fmt: skip


def _strata(pool: list[Item]):
    """The stratum of an item: its label; a label set's rarest label (ties: the first), since
    whole sets are mostly unique and would leave validation nearly empty."""
    if not any(it.labels for it in pool):
        return lambda it: it.label
    counts: dict[str, int] = defaultdict(int)
    for it in pool:
        for lab in it.labels or ():
            counts[lab] += 1
    return lambda it: min(it.labels, key=lambda lab: (counts[lab], lab)) if it.labels else it.label


def _cell(v) -> str:
    """A JSON value as the text a CSV cell would hold: as JSON writes it (true, 1.5, ["a"]), not
    as Python would (True); null is empty. A whole float is its int: pandas writes an int column
    with a gap in it as 1.0, and label 1.0 beside label 1 made two classes."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return "" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def collect_labels(splits: dict[str, list[Item]]) -> list[str]:
    """The ordered label list: every training label, sorted (numerically when all are numbers)."""
    if any(it.labels is not None for it in splits["train"]):
        from .labelsets import collect_label_sets

        return collect_label_sets(splits)
    labels = {it.label for it in splits["train"] if it.label is not None}
    unseen = sorted({it.label for s in ("val", "test") for it in splits[s]} - labels, key=str)
    if unseen:
        raise InputError(f"data: label(s) {', '.join(map(repr, unseen))} appear in val/test but never in train")
    if all(_is_number(x) for x in labels):
        # Ties ("1", "01", "1.0") broken by the text: the order must not depend on the set's
        # iteration order (Python's hash seed), or a resumed run would see its labels "change".
        return sorted(labels, key=lambda x: (float(x), x))
    return sorted(labels)


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))  # "nan" and "inf" are names: NaN has no place in an order
    except ValueError:
        return False
