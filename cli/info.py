"""attn info"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Annotated, Literal

import typer

from attn.api import label_list

from .common import ModelOpt, f4, fail, handle_errors
from .render import baseline_line, printable

EPILOG = """\
Examples:

  attn info                       # runs/latest

  attn info runs/digits-20261122-101500/model.attn --format json | jq .labels
"""


@handle_errors
def info_cmd(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Model file or run directory (default: $ATTN_MODEL, else runs/latest).", show_default=False
        ),
    ] = None,
    fmt: Annotated[Literal["text", "json", "jsonl"], typer.Option("--format", "-f")] = "text",
    model_opt: ModelOpt = None,
) -> None:
    """Show what a model file holds: recipe, labels, size, versions, test metrics. Verifies its checksum."""
    fmt = "json" if fmt == "jsonl" else fmt  # a single JSON line: jsonl too, one word across commands
    import yaml

    from attn.api import info as read_info

    if model is not None and model_opt is not None:
        raise fail("give the model once: as MODEL or as -m/--model")
    info = read_info(model if model is not None else model_opt)  # -m as the other model commands take it
    h, path = {k: v for k, v in info.items() if k not in ("path", "format_version")}, info["path"]
    if fmt == "json":
        print(json.dumps(info))
        return
    r = h.get("recipe", {})
    m = h.get("metrics") or {}
    lines = [
        f"model        {path}" + (f" ({os.path.getsize(path) / 1e6:.1f} MB)" if os.path.isfile(path) else ""),
        f"family       {r.get('model', {}).get('name')} ({h.get('parameters', 0):,} parameters"
        + (f", an ensemble of {n} averaged)" if (n := r.get("train", {}).get("ensemble", 1)) > 1 else ")")
        + (
            "; not used: the model is its baseline (blend weight 1)"
            if float((h.get("baseline") or {}).get("blend_weight") or 0) >= 1
            else ""
        ),
        f"modality     {h.get('modality')}",
        f"labels       {len(h.get('labels', []))}: {label_list(h.get('labels', []))}",
    ]
    tok = h.get("tokenizer")
    if tok:
        tc = r.get("features", {}).get("tokenizer", {})
        grams = [f"char {tc['char_ngrams'][0]}-{tc['char_ngrams'][1]}-grams"] if tc.get("char_ngrams") else []
        grams += ["word bigrams"] if tc.get("word_ngrams", 1) > 1 else []
        hashed = f", {' + '.join(grams)} in {tc.get('ngram_buckets')} buckets" if grams else ""
        lines.append(f"tokenizer    {tok.get('level')} level, {tok.get('vocab_size')} tokens, "
                     f"max_len {tc.get('max_len')}{hashed}")  # fmt: skip
    enc = r.get("features", {}).get("encoder")
    if isinstance(enc, dict):
        c = enc.get("config") or {}
        layers = c.get("num_hidden_layers", c.get("n_layers", c.get("encoder_layers")))  # BERT, DistilBERT, Whisper
        shape = f"{layers} layers x {c.get('hidden_size', c.get('dim', c.get('d_model')))}"
        lines.append(f"encoder      {enc.get('name')} ({c.get('model_type')}, {shape}, finetune {enc.get('finetune')}, "
                     f"sha256 {str(enc.get('sha256'))[:16]}...)")  # fmt: skip
    for k, v in (h.get("model_info") or {}).items():
        lines.append(f"{k:<12} {v}")
    if m:
        scores = (f"accuracy {m.get('accuracy', 0):.4f}, macro-F1 {m.get('macro_f1', 0):.4f}"
                  if not (r.get("data") or {}).get("multi_label") else  # its "accuracy" is exact-set match
                  f"macro-F1 {m.get('macro_f1', 0):.4f}, exact-set match {m.get('accuracy', 0):.4f}"
                  if "micro_f1" not in m else  # a model file from before the header kept the rest
                  f"macro-F1 {m.get('macro_f1', 0):.4f}, micro-F1 {m.get('micro_f1', 0):.4f}, macro mAP "
                  f"{m.get('macro_map', 0):.4f}, exact-set match {m.get('exact_match', 0):.4f}")  # fmt: skip
        lines.append(f"test         {scores} ({m.get('count')} {'texts' if tok else 'clips'}, {m.get('split', 'test')} "
                     "split)")  # fmt: skip
    if refit := ((h.get("train") or {}).get("data") or {}).get("refit"):  # train.refit: what the saved model is
        lines.append(f"refit        trained again on train + val ({refit.get('examples')} examples) for "
                     f"{refit.get('epochs')} epochs, the count validation chose "
                     f"(refit: {refit.get('why')})")  # fmt: skip
    if cv := h.get("cv"):  # train.folds: each fold's model scored on its held-out fold
        lines.append(f"folds        accuracy {cv['accuracy_mean']:.4f} +- {cv['accuracy_std']:.4f}, macro-F1 "
                     f"{cv['macro_f1_mean']:.4f} +- {cv['macro_f1_std']:.4f} held out, over {cv['folds']} folds; "
                     f"the saved model: {cv['final']}")  # fmt: skip
    if h.get("unfinished"):
        lines.append(f"unfinished   the network of epoch {h.get('epoch')}, written while its run trained (no blend, "
                     f"calibration or test scores yet): attn train --resume {Path(path).parent}")  # fmt: skip
    if (b := h.get("baseline")) is not None:
        lines.append(f"baseline     {baseline_line(b)}")
    lines += scoring_lines(h)
    if ev := h.get("events"):
        on = ev.get("tuned_on") or {}
        lines.append(
            f"events       hop {ev.get('hop_seconds')} s, " + ", ".join(f"{k} {v}" for k, v in ev["settings"].items())
        )
        if on:
            lines.append(f"events       tuned on {on.get('recordings')} recordings ({on.get('split')} of "
                         f"{on.get('annotations')}): event F1 {on.get('event_f1', 0):.4f}, "
                         f"error rate {f4(on.get('event_error_rate'))}")  # fmt: skip
    for key, c in ((h.get("train") or {}).get("data", {}).get("auto") or {}).items():
        lines.append(f"auto         {key} = {c['value']} ({c['why']})")
    lines += [
        f"trained      {h.get('created')} with attn {h.get('attn_version')}"
        + (f" ({h['attn_commit']})" if h.get("attn_commit") else "")
        + f", torch {h.get('torch_version')}"
        + trained_on(h.get("train") or {}),
        "recipe:",
        "  " + yaml.safe_dump(r, sort_keys=False, default_flow_style=None).rstrip().replace("\n", "\n  "),
    ]
    print(printable("\n".join(lines)))  # labels and paths are the user's: no escape sequences reach the terminal


def trained_on(t: dict) -> str:
    """The ", on cpu (1 torch thread)" of the trained line: where the run trained (the weights
    depend on the CPU thread count); "" for a model file from before it was kept."""
    if not t.get("device"):
        return ""
    n = t.get("threads")
    return f", on {t['device']}" + (f" ({n} torch thread{'s' if n != 1 else ''})" if n else "")


def scoring_lines(h: dict) -> list[str]:
    """What turns the model's scores into answers, as `--format json` has it: the temperature,
    the min score below which predict answers `unknown`, the novelty check, a multi-label
    model's per-class thresholds."""
    out = []
    if cal := h.get("calibration"):
        if "val_ece" in cal:
            ece = f"{cal.get('val_ece_before', 0):.4f} -> {cal.get('val_ece', 0):.4f}"
            if cal.get("not_fitted"):  # T = 1 kept: it said "calibrated temperature 1.0000 (...; validation)"
                out.append(f"calibrated   no temperature (T = 1): {cal['not_fitted']} (validation ECE {ece})")
            else:
                out.append(f"calibrated   temperature {cal.get('temperature', 1.0):.4f} (validation ECE {ece}; "
                           f"{cal.get('fitted_on')})")  # fmt: skip
        if (s := cal.get("min_score")) is not None:
            ab = cal.get("abstain") or {}
            chosen = (f" (validation precision {ab['val_precision']:.4f} at coverage {ab['val_coverage']:.4f}, "
                      f"target {ab['target_precision']:g})" if "val_precision" in ab else "")  # fmt: skip
            out.append(f"min score    {s:.4f}: predict answers `unknown` below it{chosen}")
    if nov := h.get("novelty"):
        out.append(f"novelty      `unknown` below similarity {nov.get('min_similarity', 0):.4f} to the k-th nearest "
                   f"(k = {nov.get('neighbors')}) of {nov.get('bank')} training clips; keeps "
                   f"{100 * nov.get('kept', 0):.1f}% of {nov.get('fitted_on')}")  # fmt: skip
    if th := h.get("thresholds"):
        chosen = ((h.get("train") or {}).get("data") or {}).get("thresholds") or {}
        glob = f", global {chosen['global']:g}" if isinstance(chosen.get("global"), (int, float)) else ""
        out.append(f"thresholds   per class: min {min(th):.4f}, median {statistics.median(th):.4f}, "
                   f"max {max(th):.4f} ({len(th)} classes{glob}; --threshold overrides)")  # fmt: skip
    return out
