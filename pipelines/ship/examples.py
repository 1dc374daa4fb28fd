"""report.html's examples: the evaluated split's most confidently wrong examples (a multi-label
model: its precision-recall curves and the tag sets furthest from the truth), from what training
scored (`Scored`), else scored again with the run's model file."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from attn.errors import AttnError

from ..store.rundir import MODEL
from .page import img, section

WRONG = 12  # most confidently wrong examples shown


@dataclass(frozen=True)
class Scored:
    """What training already scored for the report: the listed splits and the saved model's
    window logits on the evaluated split, so the report lists, decodes and runs nothing again."""

    splits: dict[str, list]  # split -> items, as the recipe lists them
    split: str  # the evaluated split (metrics.json's)
    ws: object  # its WindowSet: clips (N, ...) and labels (N,)
    items: list  # the items ws holds, in its order
    logits: np.ndarray  # (W, K) the saved model's window logits on ws
    labels: list[str]
    recipe: object  # the resolved Recipe (modality; features for the log-mel thumbnails)


def scored_examples(rd: Path, header: dict, metrics: dict | None, scored: Scored | None):
    """(most confidently wrong examples as a section, the listed splits, the evaluated split's
    window count, that split; None where unknown): from what training scored, else lists the
    stored recipe's data and scores the evaluated split with model.attn (`header`: its header)."""
    if scored is not None:
        wrong, windows = wrong_examples(scored, header)
        return wrong, scored.splits, windows, scored.split
    try:
        from ..data.sources import list_items, split_items
        from ..infer.evaluate import score_items
        from ..store.artifact import load_model

        loaded = load_model(rd / MODEL)
        r = loaded.recipe
        splits = split_items(list_items(r.data, r.modality), r.data)
        split = (metrics or {}).get("split") or ("test" if splits["test"] else "val")
        if not splits[split]:
            return section("Most confidently wrong", "<p class='note'>No examples in the split.</p>"), splits, 0, split
        ws, kept, _, logits = score_items(loaded, splits[split], r.data, f"{split} split")
        scored = Scored(splits, split, ws, kept, logits, list(loaded.labels), r)
        wrong, windows = wrong_examples(scored, header)
    except (AttnError, OSError) as e:
        why = f"<p class='note'>Data not available here, so these sections are incomplete: {html.escape(str(e))}</p>"
        return section("Most confidently wrong", why), None, None, None
    return wrong, splits, windows, split


def wrong_examples(s: Scored, header: dict) -> tuple[str, int]:
    """Render the scored split's wrong examples, highest score for the wrong label first (a
    multi-label model: its PR curves and the furthest tag sets, `_tagged`)."""
    from ..infer.inference import aggregate, softmax

    ws, kept, logits, split = s.ws, s.items, s.logits, s.split
    if not len(ws):
        return section("Most confidently wrong", "<p class='note'>No examples in the split.</p>"), 0
    if ws.multi_label:  # model_thresholds reads what the model file holds: its recipe, header and labels
        view = SimpleNamespace(recipe=s.recipe, header=header, labels=s.labels)
        return _tagged(view, ws, kept, logits, split), ws.num_windows
    probs = aggregate(softmax(logits), ws.all_windows[:, 0], len(ws), heard=ws.heard)  # (N, K), as evaluate
    pred = probs.argmax(1)
    bad = np.flatnonzero(pred != ws.labels)
    bad = bad[np.argsort(-probs[bad, pred[bad]], kind="stable")][:WRONG]
    title = f"Most confidently wrong ({len(np.flatnonzero(pred != ws.labels))} of {len(ws)} {split} examples wrong)"
    if not len(bad):
        return section(title, "<p class='note'>None: every example was right.</p>"), ws.num_windows
    audio = s.recipe.modality == "audio"
    head = "<tr><th>example</th><th>true</th><th>predicted</th><th>score</th>" + ("<th>log-mel</th>" if audio else "")
    rows = []
    for i in bad:
        it = kept[i]
        cell = html.escape(Path(it.source).name if audio else it.source)
        row = (f"<tr><td title='{html.escape(str(it.source))}'>{cell}</td><td>{html.escape(it.label)}</td>"
               f"<td>{html.escape(s.labels[pred[i]])}</td><td>{probs[i, pred[i]]:.3f}</td>")  # fmt: skip
        if audio:
            row += f"<td>{_thumb(ws.clips[i], s.recipe.features)}</td>"
        rows.append(row + "</tr>")
    return section(title, f"<table>{head}</tr>{''.join(rows)}</table>"), ws.num_windows


def _tagged(loaded, ws, kept: list, logits: np.ndarray, split: str) -> str:
    """Multi-label: per-class precision-recall curves with the stored thresholds marked, and the
    examples whose tag sets are furthest from the truth."""
    from ..infer import multilabel as ml
    from ..infer import plots

    scores, th = ml.clip_scores(logits, ws), ml.model_thresholds(loaded)
    curves = img(plots.pr_figure(ml.pr_curves(scores, ws.labels, loaded.labels, th)), "precision-recall curves")
    worst, n_wrong = ml.worst_examples(scores, ws.labels, loaded.labels, th)
    audio = loaded.recipe.modality == "audio"
    names = [Path(kept[i].source).name if audio else kept[i].source for i, *_ in worst]
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(', '.join(t))}</td>"
                   f"<td>{html.escape(', '.join(p))}</td><td>{k}</td></tr>"
                   for name, (_, t, p, k) in zip(names, worst, strict=True))  # fmt: skip
    table = f"<table><tr><th>example</th><th>true</th><th>predicted</th><th>wrong labels</th></tr>{rows}</table>"
    return section(f"Precision-recall per class ({split} split; dot: the chosen threshold)", curves) + section(
        f"Furthest from the truth ({n_wrong} of {len(ws)} {split} tag sets not exact)", table
    )


def _thumb(clip: np.ndarray, features) -> str:
    from ..infer import plots
    from .explain import display_logmel

    wave = clip[: features.frame_samples]
    return img(plots.logmel_thumb(display_logmel(wave, features), len(wave) / features.sample_rate), "log-mel")
