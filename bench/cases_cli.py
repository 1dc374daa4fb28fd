"""Command-line cases: cold start and batch prediction, as users run them."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from .common import attn_cmd, case, command_time, data_root


def _model(kind: str, root) -> str:
    """A quickly trained model with the shipped recipe's architecture (speed, not accuracy)."""
    out = tempfile.mkdtemp()
    recipe = {"audio": "recipes/digits.yaml", "text": "recipes/trec.yaml"}[kind]
    env = dict(os.environ, ATTN_DATA=str(root))
    r = subprocess.run([*attn_cmd(), "train", recipe, "--out", f"{out}/m", "--quiet", "--set", "train.epochs=1"],
                       capture_output=True, text=True, env=env)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-500:])
    return f"{out}/m/model.attn"


def cold_start(quick: bool = False) -> list[dict]:
    root = data_root()
    attn = attn_cmd()
    n = 3 if quick else 5
    t_help = command_time([*attn, "--help"], repeats=n)
    t_torch = command_time([sys.executable, "-c", "import torch"], repeats=n)
    t_python = command_time([sys.executable, "-c", "pass"], repeats=n)
    rows = [case("cold start: attn --help", "attn --help", "python -c pass", t_help, t_python, "s", "< 0.3 s",
                 t_help < 0.3, higher_is_better=False)]  # fmt: skip
    if root is None:
        return rows
    audio, text = _model("audio", root), _model("text", root)
    wav = str(root / "fsdd" / "recordings" / "7_jackson_32.wav")
    t_pred = command_time([*attn, "predict", "-m", audio, wav], repeats=n)
    t_text = command_time([*attn, "predict", "-m", text, "--text", "How far is the moon ?"], repeats=n)
    rows.append(case("cold start: attn predict one.wav", "one FSDD file, digits CNN", "python -c 'import torch'",
                     t_pred, t_torch, "s", "≤ import torch + 0.7 s", t_pred <= t_torch + 0.7,
                     higher_is_better=False, overhead_s=round(t_pred - t_torch, 3)))  # fmt: skip
    rows.append(case("cold start: attn predict --text", "one question, TREC transformer", "python -c 'import torch'",
                     t_text, t_torch, "s", "≤ import torch + 0.7 s", t_text <= t_torch + 0.7,
                     higher_is_better=False, overhead_s=round(t_text - t_torch, 3)))  # fmt: skip
    return rows


def batch_predict(quick: bool = False) -> list[dict]:
    root = data_root()
    if root is None:
        return [{"case": "batch predict", "skipped": "FSDD not found"}]
    attn = attn_cmd()
    model = _model("audio", root)
    files = sorted(str(p) for p in (root / "fsdd" / "recordings").glob("*.wav"))
    if quick:
        files = files[:600]
    runs = []
    for _ in range(1 if quick else 3):  # median of three: one call is at the mercy of a busy machine
        t0 = time.perf_counter()
        r = subprocess.run([*attn, "predict", "-m", model, "-"], input="\n".join(files), capture_output=True,
                           text=True)  # fmt: skip
        runs.append(time.perf_counter() - t0)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == len(files), r.stderr[-300:]
    t_batch = statistics.median(runs)
    t_torch = command_time([sys.executable, "-c", "import torch"], repeats=3)
    loop = files[: 10 if quick else 20]
    t0 = time.perf_counter()
    for f in loop:
        subprocess.run([*attn, "predict", "-m", model, f], capture_output=True, text=True, check=True)
    t_loop = (time.perf_counter() - t0) / len(loop)
    fps = len(files) / t_batch
    return [case("batch predict: one call vs a shell loop", f"{len(files)} FSDD files, digits CNN",
                 "one `attn predict FILE` per file", fps, 1 / t_loop, "files/s", "≥ 500 files/s", fps >= 500,
                 batch_seconds=round(t_batch, 2), import_torch_seconds=round(t_torch, 2),
                 after_startup_files_per_s=round(len(files) / max(t_batch - t_torch, 1e-9)),
                 per_file_call_seconds=round(t_loop, 3))]  # fmt: skip


def onnx_predict(quick: bool = False) -> list[dict]:
    """`attn predict` on the exported ONNX file (onnxruntime, no torch import) beside the same
    model's .attn file: one file cold, and many files in one call."""
    root = data_root()
    if root is None:
        return [{"case": "ONNX predict", "skipped": "FSDD not found"}]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return [{"case": "ONNX predict", "skipped": "the export extra is not installed (pip install -e '.[export]')"}]
    attn = attn_cmd()
    n = 3 if quick else 5
    model = _model("audio", root)
    onnx = model.replace(".attn", ".onnx")
    r = subprocess.run([*attn, "export", "-m", model, "--out", onnx, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-500:])
    diff = float(f"{json.loads(r.stdout)['max_abs_diff']:.2g}")
    wav = str(root / "fsdd" / "recordings" / "7_jackson_32.wav")
    t_onnx = command_time([*attn, "predict", "-m", onnx, wav], repeats=n)
    t_attn = command_time([*attn, "predict", "-m", model, wav], repeats=n)
    files = sorted(str(p) for p in (root / "fsdd" / "recordings").glob("*.wav"))[: 600 if quick else None]
    stdin = "\n".join(files)
    b_onnx = command_time([*attn, "predict", "-m", onnx, "-"], repeats=1 if quick else 3, stdin=stdin)
    b_attn = command_time([*attn, "predict", "-m", model, "-"], repeats=1 if quick else 3, stdin=stdin)
    return [
        case("cold start: attn predict one.wav, ONNX file", "one FSDD file, digits CNN exported (onnxruntime)",
             "the same model's .attn file (imports torch)", t_onnx, t_attn, "s", "faster than the .attn file",
             t_onnx < t_attn, higher_is_better=False, max_abs_diff=diff),
        case("batch predict: ONNX file vs .attn file", f"{len(files)} FSDD files, one call, digits CNN",
             "the same model's .attn file", len(files) / b_onnx, len(files) / b_attn, "files/s", "≥ 0.8x",
             b_onnx <= b_attn / 0.8),
    ]  # fmt: skip
