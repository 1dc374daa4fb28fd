"""Multi-label data (`data.multi_label: true`): label cells parsed into label sets, the label
list, multi-hot targets. The model side (thresholds, metrics, predictions) is
`attn.pipelines.infer.multilabel`."""

from __future__ import annotations

import json
import logging

import numpy as np

from attn.errors import InputError

from .items import clean_label, label_index, whole_number

log = logging.getLogger("attn")

SEPARATORS = (";", "|", ",")  # what data.label_sep: auto tries


def label_list(labels) -> str:
    """Labels joined by ", " for people to read (`attn info`, report.html), each that holds a
    comma or outer spaces quoted ("rain, heavy"), so the list reads back one way."""
    return ", ".join(json.dumps(x) if "," in x or x != x.strip() else x for x in map(str, labels))


# -- label sets ---------------------------------------------------------------------------------


RARE_SHARE = 5  # a separator in under 1/5 as many cells as the most common one does not decide


def detect_sep(cells: list[str], where: str) -> str:
    """data.label_sep: auto: of the SEPARATORS found in the cells (JSON lists aside), the one that
    splits them into the fewest distinct labels (ties: the one in more cells, then the earlier),
    among those in at least 1/RARE_SHARE as many cells as the most common one.
    The true separator leaves the label vocabulary; a wrong one leaves every combination of
    labels whole ("a|b" stays one label when split on ","), so a label that itself holds a `,` or
    `;` does not decide however common it is. The log says which was taken. When none occurs
    every example has one label, which is allowed but said."""
    plain = [c for c in cells if not _looks_json(c)]
    found = []
    for order, sep in enumerate(SEPARATORS):
        n = sum(sep in c for c in plain)
        if n:
            distinct = len({p.strip() for c in plain for p in c.split(sep) if p.strip()})
            found.append((distinct, -n, order, sep))
    if found:
        # A candidate in a handful of cells (a label holding a `,`, a typo) says too little to
        # outvote one that joins most cells: 1 of 240 cells split on `,` left 7 labels where `;`,
        # the separator of all 240, left 8 (parent;child tags have few distinct combinations).
        most = max(-n for _, n, _, _ in found)
        distinct, n, _, sep = min(c for c in found if -c[1] * RARE_SHARE >= most)
        others = ", ".join(f"{s!r}: {d}" for d, _, _, s in sorted(found) if s != sep)
        log.info("%s: data.label_sep auto: %r (in %d label cells, %d distinct labels%s)", where, sep, -n, distinct,
                 f"; split on {others} labels" if others else "")  # fmt: skip
        return sep
    if plain:
        log.warning("%s: data.multi_label is on but no label cell holds a separator (tried %s): every example "
                    "has one label; set data.label_sep if yours is another", where, " ".join(SEPARATORS))  # fmt: skip
    return SEPARATORS[0]


def check_sep(cells: list[str], sep: str, where: str) -> None:
    """A separator given in the recipe that no cell holds: one warning (probably a wrong sep)."""
    plain = [c for c in cells if not _looks_json(c)]
    if plain and not any(sep in c for c in plain):
        log.warning("%s: data.label_sep %r never occurs in the label column: every example has one label "
                    "(is the separator right?)", where, sep)  # fmt: skip


def _looks_json(text: str) -> bool:
    """A cell meant as a JSON list: `["a", "b"]` or `[]`, not a label that starts with a bracket
    (`[noise];dog`, `[laughter]`)."""
    t = text.strip()
    return t.startswith("[") and t.endswith("]") and (t[1:].lstrip()[:1] in ('"', "]"))


def parse_cell(cell: str, sep: str, where: str) -> tuple[str, ...]:
    """A label cell -> its labels, sorted and without duplicates: `a;b` (split on `sep`) or a
    JSON list `["a", "b"]` (a JSONL manifest's list). An empty set is an error."""
    text = cell.strip()
    if _looks_json(text):
        try:
            parts = json.loads(text)
        except json.JSONDecodeError:
            parts = None
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise InputError(f"{where}: label list {text[:60]!r} is not a JSON list of strings")
    else:
        parts = text.split(sep)
    labels = tuple(sorted({clean_label(p) for p in parts if p.strip()}))
    if not labels:
        raise InputError(f"{where}: empty label list")
    return labels


def single_labels(items: list, path: str) -> list:
    """Single-label data (`multi_label` off) whose labels look like label sets: a JSON list of one
    label is that label (a JSONL writer's `["joy"]`); a list of several is an error, and labels
    that join others standing alone (`approval;neutral` beside `approval` and `neutral`) a
    warning, since each combination would be a class of its own. `items`: Items of one file."""
    from dataclasses import replace

    out = []
    for it in items:
        if it.label and _looks_json(it.label):
            try:
                parts = json.loads(it.label)
            except json.JSONDecodeError:
                parts = None
            if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                if not any(p.strip() for p in parts):
                    raise InputError(f"{it.where}: empty label")
                if len(parts) != 1:
                    raise InputError(f"{it.where}: the label is a list of {len(parts)} labels; "
                                     "set data.multi_label=true for several labels per example")  # fmt: skip
                it = replace(it, label=clean_label(parts[0]))
        out.append(it)
    labels = {it.label for it in out if it.label}
    same = sorted(lab for lab in labels if (w := whole_number(lab)) is not None and w in labels)
    if same:  # a CSV's "1" and "1.0" (JSON numbers are read one way already): two classes, said
        log.warning("%s: label(s) %s and %s name the same number%s: they are different classes; write each one "
                    "way", path, ", ".join(map(repr, same[:3])), ", ".join(repr(whole_number(x)) for x in same[:3]),
                    "s" if len(same) > 1 else "")  # fmt: skip
    for sep in SEPARATORS:
        joined = sorted(lab for lab in labels if sep in lab and all(p.strip() in labels for p in lab.split(sep)))
        if joined:
            parts = sorted({p.strip() for p in joined[0].split(sep)})
            log.warning("%s: %d label(s) like %r join labels that also stand alone (%s): each is a class of its "
                        "own; if an example can have several labels, set data.multi_label=true", path, len(joined),
                        joined[0], ", ".join(parts))  # fmt: skip
            break
    return out


def collect_label_sets(splits: dict[str, list]) -> list[str]:
    """Every label of the training sets, sorted. A label seen only in val/test cannot be learned:
    it is dropped from those examples with a warning (an example left with none keeps no label,
    and counts as all negatives)."""
    labels = sorted({lab for it in splits["train"] for lab in it.labels or ()})
    unseen = sorted({lab for s in ("val", "test") for it in splits.get(s, []) for lab in it.labels or ()} - set(labels))
    if unseen:
        log.warning("data: label(s) %s appear in val/test but never in train: ignored there (a model cannot "
                    "learn them)", ", ".join(map(repr, unseen)))  # fmt: skip
    return labels


def multi_hot(label_sets: list[tuple[str, ...] | None], labels: list[str]) -> np.ndarray:
    """(N, K) float32 targets: 1 where the example carries the class; unknown labels ignored."""
    index = label_index(labels)
    y = np.zeros((len(label_sets), len(labels)), dtype=np.float32)
    for r, labs in enumerate(label_sets):
        for lab in labs or ():
            if lab in index:
                y[r, index[lab]] = 1.0
    return y


def warn_no_positives(y: np.ndarray, labels: list[str]) -> None:
    """A class with no positive among the training targets (possible when a refit or folds drop
    examples): its sigmoid only learns 'no'."""
    empty = [labels[k] for k in np.flatnonzero(y.sum(0) == 0)]
    if empty:
        log.warning("data: class(es) %s have no positive training example: the model will never tag them",
                    ", ".join(map(repr, empty)))  # fmt: skip
