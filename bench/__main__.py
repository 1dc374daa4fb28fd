"""`python -m bench`: run the benchmark cases, print JSON, rewrite BENCHMARKS.md.

    python -m bench                 # every case (about 15 minutes on 2 cores)
    python -m bench --quick         # smaller inputs, for a smoke run
    python -m bench --cases logmel,cold_start   # re-measure some; the others are kept

Speed is measured here, never asserted in tests: medians of repeated runs, each as a ratio
against a reference measured in the same run (ratio > 1 means attn is better).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import traceback

from .common import REPO, machine

CASES = {
    "logmel": ("cases_features", "logmel"),
    "pipeline": ("cases_features", "pipeline"),
    "training": ("cases_train", "trainer_vs_loop"),
    "checkpoints": ("cases_checkpoints", "checkpoints"),
    "cold_start": ("cases_cli", "cold_start"),
    "batch_predict": ("cases_cli", "batch_predict"),
    "onnx_predict": ("cases_cli", "onnx_predict"),
    "trec": ("cases_train", "trec_vs_tfidf"),
    "general": ("cases_general", "general"),
    "esc10_refit": ("cases_general", "esc10_refit"),
    "pretrained": ("cases_pretrained", "pretrained"),
    "cold_start_pretrained": ("cases_pretrained", "cold_start_pretrained"),
    "multilabel": ("cases_multilabel", "multilabel"),
    "gpu": ("cases_gpu", "gpu"),
    "threads": ("cases_threads", "thread_policy"),
    "serve": ("cases_serve", "serve"),
    "events": ("cases_events", "events"),
    "listen": ("cases_listen", "listen"),
    "listen_events": ("cases_listen_events", "listen_events"),
    "calibration": ("cases_calibration", "calibration"),
}


def run(names: list[str], quick: bool) -> dict:
    import importlib

    results = []
    stamp = dt.datetime.now().isoformat(timespec="minutes")  # one per run: --cases runs merge by it
    for name in names:
        module, fn = CASES[name]
        t0 = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            rows = getattr(importlib.import_module(f"bench.{module}"), fn)(quick=quick)
        except Exception as e:  # noqa: BLE001 - one failing case must not hide the others
            traceback.print_exc()
            rows = [{"case": name, "error": f"{type(e).__name__}: {e}"}]
        for row in rows:
            row["group"] = name
            row["measured_at"] = stamp
        results += rows
        print(f"bench: {name} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return {"date": dt.date.today().isoformat(), "quick": quick, "machine": machine(), "results": results}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Regenerate with `python -m bench` (needs `pip install -e '.[bench]'`). Measured {report['date']}"
        + (" (quick mode: smaller inputs)" if report["quick"] else "")
        + " on "
        f"{m['cpu_cores']} CPU cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}, {'GPU ' + m['cuda'] if m['cuda'] else 'no GPU'}.",
        "",
        "Each row is a median of repeated runs and a ratio against a reference measured in the same run; "
        "**ratio > 1 means attn is better** (faster, or more accurate). The machine is shared and noisy: "
        "read ratios, not absolute times.",
        "",
        "| case | input | reference | attn | reference | unit | ratio | goal | met |",
        "|---|---|---|---:|---:|---|---:|---|---|",
    ]
    stamps = sorted({r.get("measured_at", report["date"])[:16] for r in report["results"]})
    if len(stamps) > 1:
        lines[3:3] = [f"Rows come from runs started at {', '.join(stamps)} (`--cases` re-measures some and keeps "
                      "the rest; every ratio is still taken within one run).", ""]  # fmt: skip
    for r in report["results"]:
        if "attn" not in r:
            why = r.get("skipped") or r.get("error")
            lines.append(f"| {r['case']} | | | | | | | | {'skipped' if 'skipped' in r else 'error'}: {why} |")
            continue
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        extra = {k: v for k, v in r.items() if k not in {"case", "measured", "reference", "attn", "ref", "unit",
                                                         "ratio", "goal", "met", "group", "measured_at"}}  # fmt: skip
        note = "; ".join(f"{k}={v}" for k, v in extra.items())
        lines.append(f"| {r['case']} | {r['measured']} | {r['reference']} | {r['attn']:g} | {r['ref']:g} | "
                     f"{r['unit']} | {r['ratio'] if r['ratio'] is not None else ''} | {r['goal']} | {met}"
                     + (f" ({note})" if note else "") + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="markdown report ('' to skip)")
    args = ap.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}")
    os.chdir(REPO)  # recipes are addressed relative to the repository
    report = run(names, args.quick)
    print(json.dumps(report, indent=2))
    if args.out:
        stored = os.path.splitext(args.out)[0] + ".json"  # every row, so a partial run can update them
        if set(names) != set(CASES) and not args.quick and os.path.exists(stored):
            report = merge(json.load(open(stored, encoding="utf-8")), report)
        write_atomic(stored, json.dumps(report, indent=2) + "\n")
        write_atomic(args.out, markdown(report))
        print(f"bench: wrote {args.out} and {stored}", file=sys.stderr)


def merge(old: dict, new: dict) -> dict:
    """The new run's groups replace the same groups of the stored report; the others are kept."""
    fresh = {r["group"] for r in new["results"]}
    rows = [r for r in old["results"] if r.get("group") not in fresh] + new["results"]
    order = list(CASES)
    rows.sort(key=lambda r: order.index(r["group"]) if r.get("group") in order else len(order))
    return {**new, "results": rows}


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
