"""report.html: one self-contained page about a run, from what its run directory holds.

Written at the end of `attn train` and again by `attn report RUN` (older runs too). Sections:
the headline metrics (and the baseline beside them when metrics.json has one), learning curves
(history.jsonl), the confusion matrix and per-class precision/recall/F1 (metrics.json), the data
(examples per class per split, windows, truncation), the test examples the model got most
confidently wrong, and the resolved recipe. Images are inline PNG data URIs: no network, no
other file; it opens from disk in any browser. At the end of training the wrong examples come
from what training scored (`Scored`); `attn report RUN` scores the evaluated split again with
model.attn, and when the data is not there, that section says why.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError, ConfigError

from ..data.labelsets import label_list
from ..fsutil import atomic_write_text
from ..store.container import made_with
from ..store.rundir import HISTORY, METRICS, MODEL, RECIPE, REPORT, member_dir
from .examples import Scored, scored_examples
from .page import PAGE, fact, img, kv, num, section, td

log = logging.getLogger("attn")


def write_report(run_dir: str | Path, scored: Scored | None = None) -> Path:
    """Write run_dir/report.html; returns its path. Raises ConfigError when run_dir is not a run.
    `scored`: what training scored (else the evaluated split is listed and scored again)."""
    from ..infer import plots

    given = rd = Path(run_dir)
    if not rd.exists():
        if rd.is_symlink():  # runs/latest of a run moved or removed since: as predict and info say it
            raise ConfigError(f"{rd} points to {os.readlink(rd)}, which no longer exists: pass the run directory")
        raise ConfigError(f"{rd}: no such run directory" + (" (no run has finished here yet)"
                                                            if str(rd) == "runs/latest" else ""))  # fmt: skip
    if rd.is_file():
        rd = rd.parent
    if not (rd / MODEL).exists() and not (rd / METRICS).exists():
        if given != rd:  # a file: an export, or a model file copied out of its run
            raise ConfigError(f"{given}: a report is of a run directory (or its {MODEL}), and {rd} is none")
        raise ConfigError(f"{rd}: not a run directory (no {MODEL} or {METRICS})")
    metrics = _metrics(_json(rd / METRICS), rd / METRICS)
    history = _history(_jsonl(rd / HISTORY))
    header = _header(rd / MODEL)
    recipe_text = (rd / RECIPE).read_text(encoding="utf-8") if (rd / RECIPE).exists() else ""
    labels = (metrics or {}).get("labels") or header.get("labels") or []
    parts = [_head(rd, header, metrics, history)]
    if metrics and metrics.get("baseline"):
        parts.append(_baseline(metrics, history, header))
    if metrics and metrics.get("members"):
        parts.append(_members(metrics["members"]))
    if metrics and metrics.get("cv"):
        final = ((header.get("recipe") or {}).get("train") or {}).get("folds_final")
        parts.append(_cv(metrics["cv"], labels, plots, final))
    if history:
        parts.append(section("Learning curves", img(plots.curves_figure(history), "learning curves")))
    if metrics and _square(metrics.get("confusion"), len(labels)):
        matrix = img(plots.confusion_figure(metrics["confusion"], labels), "confusion matrix")
        parts.append(section(f"Confusion matrix ({metrics.get('split', 'test')} split)", matrix))
    if metrics and isinstance(metrics.get("per_class"), dict):
        parts.append(_per_class(metrics))
    if timeline := (header.get("events") or {}).get("timeline"):
        what = "truth above the model's events, post-processing tuned on these recordings"
        parts.append(section(f"Sound events: a validation recording ({what})",
                              img(plots.events_timeline_figure(timeline), "events timeline")))  # fmt: skip
    if metrics and isinstance(metrics.get("calibration"), dict):
        parts.append(_calibration(metrics))
    examples, splits, windows, split = scored_examples(rd, header, metrics, scored)
    parts.append(_data(_data_facts(rd, header), splits, windows, split))
    parts.append(examples)
    if recipe_text:
        parts.append(section("Recipe (resolved)", f"<pre>{html.escape(recipe_text)}</pre>"))
    page = PAGE.format(title=html.escape(f"attn report: {rd.name}"), body="\n".join(parts))
    path = rd / REPORT
    atomic_write_text(path, page)
    return path


# -- reading the run -----------------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


# metrics.json and history.jsonl are files anyone can edit: every value the page shows is
# formatted by `page.num` (a number as a number, anything else as escaped text) and every field a
# figure draws is checked first, so a wrong type leaves a field out instead of failing the page.
_SCORES = ("accuracy", "macro_f1", "window_accuracy", "val_accuracy")


def _metrics(m: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(m, dict):
        return None
    out = dict(m)
    for key in _SCORES:
        if key in out and not _is_number(out[key]):
            log.warning("%s: %s is %r, not a number; left out of the report", path, key, out.pop(key))
    if not (isinstance(out.get("labels"), list) and all(isinstance(x, str) for x in out["labels"])):
        out.pop("labels", None)
    if not isinstance(out.get("baseline"), dict):
        out.pop("baseline", None)
    if out.get("split") not in ("train", "val", "test"):  # it picks the split the examples come from
        out.pop("split", None)
    if not (isinstance(out.get("members"), list) and all(isinstance(x, dict) for x in out["members"])):
        out.pop("members", None)
    cv = out.get("cv")
    folds = cv.get("folds") if isinstance(cv, dict) else None
    if not (isinstance(folds, list) and all(isinstance(x, dict) for x in folds)):
        out.pop("cv", None)
    return out


def _history(records: list[Any]) -> list[dict[str, Any]]:
    """Epoch records a curve can be drawn from: a numeric epoch, numbers (or nothing) as values."""
    keep = []
    for r in records:
        if not isinstance(r, dict) or not _is_number(r.get("epoch")):
            continue
        r = {k: v for k, v in r.items() if not k.endswith(("_loss", "_accuracy", "_f1")) or _is_number(v)}
        if "member" in r and not isinstance(r["member"], (int, str)):
            r["member"] = str(r["member"])
        keep.append(r)
    return keep


def _square(confusion: Any, k: int) -> bool:
    rows = confusion if isinstance(confusion, list) and len(confusion) == k > 0 else []
    return bool(rows) and all(isinstance(r, list) and len(r) == k and all(map(_is_count, r)) for r in rows)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _header(path: Path) -> dict[str, Any]:
    from ..store.container import read_container

    try:
        return read_container(path, header_only=True).header
    except (ArtifactError, OSError):
        return {}


def _data_facts(rd: Path, header: dict[str, Any]) -> dict[str, Any]:
    """What training recorded about its data (an ensemble: its first member's run)."""
    facts = (header.get("train") or {}).get("data")
    if facts is None and (member_dir(rd, 1) / MODEL).exists():
        facts = (_header(member_dir(rd, 1) / MODEL).get("train") or {}).get("data")
    return facts or {}


# -- sections ------------------------------------------------------------------------------------


def _head(rd: Path, header: dict[str, Any], metrics: dict | None, history: list[dict]) -> str:
    r = header.get("recipe") or {}
    train = header.get("train") or {}
    model = r.get("model", {}).get("name", "?")
    n = r.get("train", {}).get("ensemble", 1)
    rows = [("model", f"{model}" + (f" (ensemble of {n})" if n > 1 else "")),
            ("parameters", f"{header.get('parameters', 0):,}"), ("modality", header.get("modality", "?")),
            ("labels", label_list(header.get("labels", [])))]  # fmt: skip
    enc = (r.get("features") or {}).get("encoder")
    if isinstance(enc, dict):
        kind = (enc.get("config") or {}).get("model_type") if isinstance(enc.get("config"), dict) else None
        rows.append(("encoder", f"{enc.get('name')} ({kind}, finetune {enc.get('finetune')}, "
                                f"sha256 {str(enc.get('sha256'))[:16]}...)"))  # fmt: skip
    refit = ((train.get("data") or {}).get("refit")) if isinstance(train.get("data"), dict) else None
    if isinstance(refit, dict):
        rows.append(("refit", f"trained again on train + val ({refit.get('examples')} examples) for "
                              f"{refit.get('epochs')} epochs: {refit.get('why')}"))  # fmt: skip
    refits = [
        m["refit"] for m in train.get("members") or [] if isinstance(m, dict) and isinstance(m.get("refit"), dict)
    ]
    if refits:  # an ensemble whose members were refitted once validation had chosen for their ensemble
        epochs = " / ".join(str(r.get("epochs")) for r in refits)
        rows.append(("refit", f"each member trained again on train + val ({refits[0].get('examples')} examples) "
                              f"for {epochs} epochs: {refits[0].get('why')}"))  # fmt: skip
    if metrics:
        rows += [("split", f"{metrics.get('split', 'test')} ({metrics.get('count')} examples)"),
                 ("accuracy", num(metrics.get("accuracy"))), ("macro-F1", num(metrics.get("macro_f1")))]  # fmt: skip
        if metrics.get("multi_label"):  # accuracy is exact-set match
            rows += [("micro-F1", num(metrics.get("micro_f1"))), ("macro mAP", num(metrics.get("macro_map"))),
                     ("labels per example", num(metrics.get("label_cardinality"), ".2f", ".2f"))]  # fmt: skip
        if "window_accuracy" in metrics:
            rows.append(("window accuracy", f"{num(metrics['window_accuracy'])} ({metrics.get('windows')} windows)"))
    best = [h for h in history if h.get("best") and "member" not in h and "fold" not in h]
    if best:  # one run's (an ensemble's members and a cross-validation's folds have their own tables)
        rows.append(("best epoch", f"{best[-1]['epoch']} of {train.get('epochs_run', len(history))}"))
    if train.get("seconds") is not None:
        rows.append(("training time", f"{train['seconds']:.1f} s"))
    rows.append(("trained", f"{header.get('created', '?')} with {made_with(header)}, "
                            f"torch {header.get('torch_version', '?')}"))  # fmt: skip
    return f"<h1>{html.escape(rd.name)}</h1>\n<p class='path'>{html.escape(str(rd.resolve()))}</p>\n" + kv(rows)


def _baseline(metrics: dict, history: list[dict], header: dict) -> str:
    b = metrics["baseline"]
    best = [h for h in history if h.get("best") and "member" not in h and "fold" not in h]
    val = best[-1] if best else {}
    secs = (header.get("train") or {}).get("seconds")
    blend = metrics.get("blend") or {}
    # history's validation figures are the network's; with the baseline blended in, the saved
    # model's own validation accuracy is the blend's (its macro-F1 was not measured)
    alone = " (network alone)" if blend.get("weight") else ""
    rows = [
        ("accuracy", metrics.get("accuracy"), b.get("accuracy"), ".4f"),
        ("macro-F1", metrics.get("macro_f1"), b.get("macro_f1"), ".4f"),
    ]
    if alone and "val_accuracy_blend" in blend and "val_macro_map_blend" not in blend:
        rows.append(("validation accuracy", blend["val_accuracy_blend"], b.get("val_accuracy"), ".4f"))
    rows += [(f"validation accuracy{alone}", val.get("val_accuracy", metrics.get("val_accuracy")),
              b.get("val_accuracy"), ".4f"),
             (f"validation macro-F1{alone}", val.get("val_macro_f1"), b.get("val_macro_f1"), ".4f"),
             ("seconds", secs, b.get("seconds"), ".1f")]  # fmt: skip
    body = "".join(f"<tr><th>{k}</th>{td(m, f)}{td(v, f)}</tr>" for k, m, v, f in rows)
    kind = html.escape(str(b.get("kind", "baseline")))
    return section("Model and baseline", f"<table><tr><th></th><th>model</th><th>baseline: {kind}</th></tr>"
                                          f"{body}</table>")  # fmt: skip


def _calibration(metrics: dict) -> str:
    """Reliability diagram (temperature scaling) and coverage vs accuracy (`unknown` below a score)."""
    from ..infer.calibration_plots import coverage_rows, reliability_figure

    cal, ab = metrics["calibration"], metrics.get("abstention") or {}
    fitted = (f"No temperature (T = 1): {html.escape(str(cal['not_fitted']))}" if cal.get("not_fitted") else
              f"Temperature {num(cal.get('temperature'), '.3f', '.3f')} fitted on "
              f"{html.escape(str(cal.get('fitted_on')))}")  # fmt: skip
    note = (f"<p class='note'>{fitted}; ECE on the {html.escape(str(metrics.get('split', 'test')))} "
            f"split {num(cal.get('ece_before'))} -> {num(cal.get('ece'))} ({html.escape(str(cal.get('binning')))}); "
            f"validation {num(cal.get('val_ece_before'))} -> {num(cal.get('val_ece'))}.</p>")  # fmt: skip
    rows = "".join(f"<tr>{td(s, '.4f')}{td(c)}{td(a)}</tr>" for s, c, a in coverage_rows(ab))
    table = f"<table><tr><th>min score</th><th>coverage</th><th>accuracy of the answers</th></tr>{rows}</table>"
    target = (cal.get("abstain") or {}).get("target_precision")
    stored = (f"<p class='note'>predict answers <code>unknown</code> below {num(ab['min_score'])} (chosen on "
              f"validation for precision {num(target, '.2f')}).</p>"
              if cal.get("min_score") is not None and "min_score" in ab else "")  # fmt: skip
    return section("Calibration", note + img(reliability_figure(cal), "reliability diagram") + stored + table)


def _cv(cv: dict, labels: list[str], plots, final: str | None = None) -> str:
    """Cross-validation: each fold's held-out scores, their mean +- std, the pooled confusion."""
    head = "<tr><th>fold</th><th>held out</th><th>accuracy</th><th>macro-F1</th><th>best epoch</th></tr>"
    keys = ("fold", "count", "accuracy", "macro_f1", "best_epoch")
    rows = "".join("<tr>" + "".join(td(f.get(k)) for k in keys) + "</tr>" for f in cv["folds"])
    spread = {k: f"{num(cv.get(k + '_mean'))} +- {num(cv.get(k + '_std'))}" for k in ("accuracy", "macro_f1")}
    acc, f1 = html.escape(spread["accuracy"]), html.escape(spread["macro_f1"])
    mean = f"<tr><th>mean +- std</th><td></td><td>{acc}</td><td>{f1}</td><td></td></tr>"
    body = f"<table>{head}{rows}{mean}</table>"
    if _square(cv.get("confusion"), len(labels)):
        body += img(plots.confusion_figure(cv["confusion"], labels), "pooled confusion matrix of the held-out folds")
    saved = ("the saved model averages the fold models, each trained on the other folds" if final == "ensemble" else
             "the saved model trained on every fold, for the folds' median best epoch")  # fmt: skip
    note = f"<p class='note'>Each fold's model chose its epoch on the fold it is scored on; {saved}.</p>"
    return section(f"Cross-validation ({len(cv['folds'])} folds, held-out predictions pooled)", body + note)


def _members(members: list[dict]) -> str:
    first = "fold" if "fold" in members[0] else "member"  # a fold ensemble's members are its fold models
    head = f"<tr><th>{first}</th><th>seed</th><th>best epoch</th><th>epochs</th><th>val accuracy</th>" \
           "<th>test accuracy</th><th>seconds</th></tr>"  # fmt: skip
    keys = (first, "seed", "best_epoch", "epochs", "val_accuracy", "test_accuracy", "seconds")
    rows = "".join("<tr>" + "".join(td(m.get(k)) for k in keys) + "</tr>" for m in members)
    return section("Ensemble members", f"<table>{head}{rows}</table>")


def _per_class(metrics: dict) -> str:
    keys = ("precision", "recall", "f1", "support") + (("ap", "threshold") if metrics.get("multi_label") else ())
    rows = "".join(f"<tr><td>{html.escape(str(lab))}</td>" + "".join(td(v.get(k), ".3f") for k in keys) + "</tr>"
                   for lab, v in metrics["per_class"].items() if isinstance(v, dict))  # fmt: skip
    head = "".join(f"<th>{k if k != 'f1' else 'F1'}</th>" for k in keys)
    return section("Per class", f"<table><tr><th>label</th>{head}</tr>{rows}</table>")


def _data(facts: dict, splits: dict | None, windows: int | None, split: str | None) -> str:
    parts = []
    if splits is not None:
        labels = sorted({lab for items in splits.values() for it in items for lab in it.labels or (it.label,)})
        names = [s for s in ("train", "val", "test") if splits.get(s)]
        counts = {s: {lab: 0 for lab in labels} for s in names}
        for s in names:
            for it in splits[s]:
                for lab in it.labels or (it.label,):
                    counts[s][lab] += 1
        head = "<tr><th>label</th>" + "".join(f"<th>{s}</th>" for s in names) + "</tr>"
        rows = "".join(f"<tr><td>{html.escape(lab)}</td>" + "".join(f"<td>{counts[s][lab]}</td>" for s in names)
                       + "</tr>" for lab in labels)  # fmt: skip
        total = "<tr><th>all</th>" + "".join(f"<th>{len(splits[s])}</th>" for s in names) + "</tr>"
        parts.append("<p>Examples per class and split (as the recipe lists them):</p>"
                     f"<table>{head}{rows}{total}</table>")  # fmt: skip
    rows = []
    for key, value in facts.items():
        rows.append((key.replace("_", " "), fact(value)))
    if windows is not None and split is not None:
        rows.append((f"{split} windows", str(windows)))
    if rows:
        parts.append("<p>What training recorded:</p>" + kv(rows))
    return section("Data", "".join(parts) or "<p class='note'>No data facts recorded.</p>")
