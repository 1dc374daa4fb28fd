"""`python -m bench.gpu_check`: the CUDA paths, checked in one run on a GPU machine.

    python -m bench.gpu_check                # ~5 min on one H200; prints one JSON object
    python -m bench.gpu_check --quick        # fewer steps (a smoke run, ~2 min)

Steps, each timed and reported (a failing step never hides the others):
  1. `pytest -m gpu`: CPU-vs-CUDA equality of the front-end, of every registered model and of
     predict, and an AMP training step (tests/test_gpu.py);
  2. the GPU cases of bench/ (bench/cases_gpu.py: log-mel throughput, training with and without
     AMP), quick mode;
  3. a short AMP training of each registered model family on FSDD and on TREC (a few hundred
     optimizer steps each; the shipped recipe of the family where there is one): finite losses
     and accuracy well above chance; with no shared data, on the synthetic quick-start set;
  4. for each model trained in 3, `attn.load(..., "cuda")` and `attn.load(..., "cpu")` predict the
     same inputs: the largest probability difference and the label agreement.

Without CUDA it prints `{"gpu_check": "skipped", ...}` and exits 0. Exit code: 0 when every step
passed (or the check was skipped), 1 otherwise. Data: $ATTN_DATA, else ../shared/data or
./shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The shipped recipe of each family where there is one; the others get their model section
# replaced (`--set model={...}`), with the family's defaults or, on text, a size that suits it.
FSDD = {"cnn": "recipes/digits.yaml", "transformer": "recipes/digits_transformer.yaml",
        "wavenet": "recipes/digits_wavenet.yaml"}  # fmt: skip
TREC = {"cnn1d": "recipes/trec.yaml", "transformer": "recipes/trec_transformer.yaml"}
TEXT_MODELS = {"cnn": {"channels": [64, 128], "dropout": 0.1},
               "wavenet": {"front_strides": [1], "channels": 64, "layers": 4, "stacks": 1}}  # fmt: skip
PROB_TOLERANCE = 5e-3  # TF32 convolutions (cuDNN's default) move probabilities by ~1e-3 at most


def data_root() -> Path | None:
    for root in (os.environ.get("ATTN_DATA"), REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if root and (Path(root) / "fsdd" / "labels.csv").exists() and (Path(root) / "trec").is_dir():
            return Path(root)
    return None


def step(name: str, fn, results: dict) -> None:
    t0 = time.perf_counter()
    print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
    try:
        out = fn()
        ok = bool(out.pop("ok", True)) if isinstance(out, dict) else True
    except Exception as e:  # noqa: BLE001 - one failing step must not hide the others
        traceback.print_exc()
        out, ok = {"error": f"{type(e).__name__}: {e}"}, False
    results[name] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 1), **(out or {})}
    print(f"gpu_check: {name} {'ok' if ok else 'FAILED'} in {results[name]['seconds']}s", file=sys.stderr, flush=True)


def run_pytest() -> dict:
    # -n 0: one process, as the GPU tests share one device (the default suite runs one per core)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-n", "0", "-q", "-p", "no:cacheprovider", "tests"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    tail = r.stdout.strip().splitlines()[-1:] or [r.stderr[-300:]]
    return {"ok": r.returncode == 0, "summary": tail[0], **({"output": r.stdout[-3000:]} if r.returncode else {})}


def run_bench_cases() -> dict:
    from bench.cases_gpu import gpu

    rows = gpu(quick=True)
    bad = [r for r in rows if "error" in r or "skipped" in r]
    return {"ok": not bad, "rows": rows}


def recipes(root: Path | None, quick: bool) -> list[tuple[str, str, str, list[str]]]:
    """(name, dataset, recipe file, overrides) for each training: every registered family on FSDD
    and on TREC, or on the synthetic quick-start set when the shared data is not there."""
    from attn.models import registry

    def model(family: str, params: dict | None = None) -> str:
        return "model=" + json.dumps({"name": family, **(params or {})})

    fsdd_epochs, trec_epochs = (1, 1) if quick else (3, 2)  # FSDD ~85 steps/epoch, TREC ~170 (batch 32)
    out = []
    for family in registry.names():
        if root is None:
            out.append((f"{family}/synthetic", "synthetic", "recipes/quickstart.yaml",
                        [model(family), f"train.epochs={2 if quick else 6}"]))  # fmt: skip
            continue
        fsdd = [f"train.epochs={fsdd_epochs}"] + ([] if family in FSDD else [model(family)])
        out.append((f"{family}/fsdd", "fsdd", FSDD.get(family, FSDD["cnn"]), fsdd))
        trec = [f"train.epochs={trec_epochs}"] + ([] if family in TREC else [model(family, TEXT_MODELS.get(family))])
        out.append((f"{family}/trec", "trec", TREC.get(family, TREC["transformer"]), trec))
    return out


def train_all(root: Path | None, quick: bool, work: str) -> tuple[dict, dict]:
    """Short AMP trainings; returns (report, {name: model path})."""
    import math

    import attn

    report, models = {}, {}
    for name, dataset, recipe, overrides in recipes(root, quick):
        out = os.path.join(work, name.replace("/", "-"))
        t0 = time.perf_counter()
        try:
            res = attn.train(str(REPO / recipe), overrides=[*overrides, "train.amp=true", "train.patience=0"], out=out,
                             device="cuda")  # fmt: skip
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            continue
        losses = [h["train_loss"] for h in res.history]
        acc = (res.metrics or {}).get("accuracy")
        chance = 1 / len(res.labels)
        report[name] = {
            "ok": all(math.isfinite(v) for v in losses) and acc is not None and acc > 2 * chance,
            "accuracy": acc, "chance": round(chance, 3), "train_loss": [round(v, 4) for v in losses],
            "epochs": res.epochs_run, "train_seconds": round(res.seconds, 1),
            "wall_seconds": round(time.perf_counter() - t0, 1), "parameters": res.parameters,
        }  # fmt: skip
        models[name] = (dataset, str(res.model_path))
    return report, models


def predict_inputs(dataset: str, root: Path | None) -> list:
    if dataset == "fsdd":
        return sorted(str(p) for p in (root / "fsdd" / "recordings").glob("*.wav"))[:200]
    if dataset == "trec":
        import csv

        path = next(p for p in sorted((root / "trec").glob("*test*")) if p.suffix in (".csv", ".tsv"))
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
        return [r["text"] for r in rows[:300]]
    import numpy as np

    rng, sr = np.random.default_rng(0), 16000
    t = np.arange(sr) / sr
    return [((0.3 * np.sin(2 * np.pi * rng.uniform(150, 1500) * t)).astype(np.float32), sr) for _ in range(100)]


def compare_predict(models: dict, root: Path | None) -> dict:
    import attn

    out, ok = {}, True
    for name, (dataset, path) in models.items():
        gpu, cpu = attn.load(path, "cuda"), attn.load(path, "cpu")
        k = len(gpu.labels)
        inputs = predict_inputs(dataset, root)
        a, b = gpu.predict(inputs, top_k=k), cpu.predict(inputs, top_k=k)
        diff, same = 0.0, 0
        for ra, rb in zip(a, b, strict=True):
            pa = {t["label"]: t["score"] for t in ra["top_k"]}
            pb = {t["label"]: t["score"] for t in rb["top_k"]}
            diff = max(diff, max(abs(pa[lab] - pb[lab]) for lab in pa))
            same += ra["label"] == rb["label"]
        agree = same / len(a)
        good = diff <= PROB_TOLERANCE and agree >= 0.99
        ok &= good
        out[name] = {"ok": good, "inputs": len(a), "max_prob_diff": round(diff, 6), "label_agreement": agree}
    return {"ok": ok, "models": out}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="fewer training steps (a smoke run)")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"gpu_check": "skipped", "reason": "no CUDA device", "torch": torch.__version__}))
        return 0
    os.chdir(REPO)
    t0 = time.perf_counter()
    root = data_root()
    if root is not None:
        os.environ.setdefault("ATTN_DATA", str(root))
    results: dict = {}
    work = tempfile.mkdtemp(prefix="attn-gpu-check-")
    cwd = os.getcwd()
    step("pytest -m gpu", run_pytest, results)
    step("bench gpu cases", run_bench_cases, results)
    models: dict = {}

    def trainings() -> dict:
        os.chdir(work)  # runs/latest of these runs lands in the scratch folder, not in the repository
        try:
            report, found = train_all(root, args.quick, work)
        finally:
            os.chdir(cwd)
        models.update(found)
        return {"ok": all(r["ok"] for r in report.values()), "runs": report}

    step("AMP training per family", trainings, results)
    step("predict: GPU equals CPU", lambda: compare_predict(models, root), results)
    summary = {
        "gpu_check": "passed" if all(r["ok"] for r in results.values()) else "failed",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "data": str(root) if root else "none (synthetic quick-start data instead of FSDD and TREC)",
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t0, 1),
        "steps": results,
    }
    print(json.dumps(summary))
    return 0 if summary["gpu_check"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
