"""`attn export`: the exported file gives `attn predict`'s probabilities, on real data.

Tiny models are trained in seconds on a slice of FSDD (spoken digits) and TREC (questions), one
per family and front end that exports; the ONNX file runs in onnxruntime (the `attn[export]`
extra; skipped where it is not installed, CI installs it) and the TorchScript file in torch.
An ONNX export takes 5-20 s (torch.export), so the default suite runs one model per family and
modality and `-m slow` the other front ends and options.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attn
from attn.cli.app import app
from attn.cli.common import cli_handlers

# torch.jit.load's deprecation notice (the exporter silences it; a test loads TorchScript itself)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
runner = CliRunner()
TOL = 1e-4  # the bar; predict's records round scores to 6 places (<= 5e-7)

FSDD_RECIPE = """\
data: {{manifest: {manifest}, split_column: split}}
features: {{sample_rate: 8000, frame_seconds: 0.6, hop_seconds: 0.3, n_fft: 256, hop_length: 128, n_mels: 32,
            kind: {kind}}}
model: {model}
train: {{epochs: 1, batch_size: 16, lr: 0.003, patience: 0, seed: 0, ensemble: {ensemble}, baseline: {baseline},
         blend: {baseline}}}
"""
TREC_RECIPE = """\
data: {{train: {train}, test: {test}}}
features:
  kind: text
  embed_dim: 32
  tokenizer: {{level: word, max_len: 24, char_ngrams: {ngrams}, word_ngrams: {word_ngrams}, ngram_buckets: 2000}}
model: {model}
train: {{epochs: 1, batch_size: 32, lr: 0.003, patience: 0, seed: 0, baseline: {baseline}, blend: {baseline}}}
"""
TINY_TRANSFORMER = {"name": "transformer", "d_model": 32, "heads": 2, "layers": 1, "ff_dim": 64}
AUDIO = {
    "cnn-logmel": ("logmel", {"name": "cnn", "channels": [8, 16]}),
    # Spectrogram patches with additive attention and a learned table of 10 time patches (a 0.6 s
    # window has 10): longer inputs interpolate it inside the graph.
    "transformer-patches-additive-learned": ("logmel", {**TINY_TRANSFORMER, "patch": [8, 4], "input_norm": True,
                                             "attention": "additive", "positions": "learned", "max_positions": 10}),
    "wavenet-waveform": ("waveform", {"name": "wavenet", "front_strides": [4, 4, 2], "front_channels": 8,
                                      "channels": 8, "skip_channels": 16, "layers": 4, "stacks": 1}),
    "cnn-mfcc": ("mfcc", {"name": "cnn", "channels": [8, 16]}),
    "cnn-spectrogram": ("spectrogram", {"name": "cnn", "channels": [4, 8]}),
    "transformer-frames-learned": ("logmel", {**TINY_TRANSFORMER, "positions": "learned", "max_positions": 40}),
    "transformer-frames-additive": ("logmel", {**TINY_TRANSFORMER, "attention": "additive", "pool": "mean"}),
    "wavenet-logmel": ("logmel", {"name": "wavenet", "front_strides": [1], "channels": 8, "skip_channels": 8,
                                  "layers": 3}),
    "cnn1d-logmel": ("logmel", {"name": "cnn1d", "filters": 16}),
}  # fmt: skip
TEXT = {
    "transformer-ngrams": ({**TINY_TRANSFORMER, "token_pool": "mean"}, True),
    "transformer-words-learned": ({**TINY_TRANSFORMER, "positions": "learned", "max_positions": 24}, False),
    "cnn": ({"name": "cnn", "channels": [8]}, True),
    "wavenet": ({"name": "wavenet", "front_strides": [1], "channels": 8, "skip_channels": 8, "layers": 2}, False),
    "cnn1d": ({"name": "cnn1d", "filters": 16}, True),
}
TEXT_CNN1D = TEXT["cnn1d"][0]  # the general text recipe's family
DEFAULT = {"cnn-logmel", "transformer-patches-additive-learned", "wavenet-waveform", "transformer-ngrams"}


def cases(names):
    return [pytest.param(n, marks=() if n in DEFAULT else pytest.mark.slow) for n in names]


@pytest.fixture(autouse=True)
def _no_stale_cli_log_handler():
    """A CLI call leaves attn's log handler on the test runner's stderr, closed after the call;
    training later in this process (a session fixture, this module's models) would log to it."""
    yield
    logger = logging.getLogger("attn")
    for h in cli_handlers(logger):
        logger.removeHandler(h)


def _fsdd_manifest(data: Path, tmp: Path) -> Path:
    """5 training and 2 test clips per digit (the official split's speakers), absolute paths."""
    rows = list(csv.DictReader(open(data / "fsdd" / "labels.csv")))
    keep, seen = [], {}
    for r in rows:
        key = (r["label"], r["split"])
        if seen.get(key, 0) < (5 if r["split"] == "train" else 2):
            seen[key] = seen.get(key, 0) + 1
            keep.append({"path": str(data / "fsdd" / r["path"]), "label": r["label"], "split": r["split"]})
    p = tmp / "fsdd.csv"
    with open(p, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "split"])
        w.writeheader()
        w.writerows(keep)
    return p


def _trec_parts(data: Path, tmp: Path) -> tuple[Path, Path, list[str]]:
    """400 training and 40 test questions; returns the two manifests and the test texts."""
    out = []
    for name, n in (("train", 400), ("test", 40)):
        rows = list(csv.DictReader(open(data / "trec" / f"{name}.csv")))[:n]
        p = tmp / f"trec_{name}.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, ["text", "label"])
            w.writeheader()
            w.writerows({"text": r["text"], "label": r["label"]} for r in rows)
        out.append((p, [r["text"] for r in rows]))
    return out[0][0], out[1][0], out[1][1]


def _train(recipe: str, tmp: Path, name: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(recipe)
    return attn.train(p, out=tmp / name, device="cpu").run_dir


_TRAINED: dict[str, attn.Model] = {}  # one training per case in this module
_EXPORTED: dict[str, tuple] = {}  # case -> (Model, ExportResult): one ONNX export per case


def _audio_model(fsdd, case: str) -> attn.Model:
    if case not in _TRAINED:
        tmp, manifest, _ = fsdd
        kind, model = AUDIO[case]
        recipe = FSDD_RECIPE.format(manifest=manifest, kind=kind, model=json.dumps(model), ensemble=1, baseline="false")
        _TRAINED[case] = attn.load(_train(recipe, tmp, case))  # the network alone: the blend has its own test
    return _TRAINED[case]


def _text_model(trec, case: str) -> attn.Model:
    if case not in _TRAINED:
        tmp, train, test, _ = trec
        model, ngrams = TEXT[case]
        recipe = TREC_RECIPE.format(train=train, test=test, model=json.dumps(model), baseline="false",
                                    ngrams="[2, 4]" if ngrams else "null", word_ngrams=2 if ngrams else 1)  # fmt: skip
        _TRAINED[case] = attn.load(_train(recipe, tmp, case))
    return _TRAINED[case]


def _audio_case(fsdd, case: str):
    if case not in _EXPORTED:
        m = _audio_model(fsdd, case)
        _EXPORTED[case] = m, m.export(fsdd[0] / f"{case}.onnx")
    return _EXPORTED[case]


def _text_case(trec, case: str):
    if case not in _EXPORTED:
        m = _text_model(trec, case)
        _EXPORTED[case] = m, m.export(trec[0] / f"{case}.onnx")
    return _EXPORTED[case]


@pytest.fixture(scope="module")
def fsdd(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdd")
    manifest = _fsdd_manifest(shared_data, tmp)
    tests = [r["path"] for r in csv.DictReader(open(manifest)) if r["split"] == "test"]
    return tmp, manifest, tests


@pytest.fixture(scope="module")
def trec(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trec")
    return (tmp, *_trec_parts(shared_data, tmp))


def _predict_probs(m, inputs) -> np.ndarray:
    """`attn predict`'s probabilities: every label's score from its top-k records."""
    recs = m.predict(inputs, top_k=len(m.labels))
    assert all("error" not in r for r in recs), recs
    return np.array([[{t["label"]: t["score"] for t in r["top_k"]}[lab] for lab in m.labels] for r in recs])


def _onnx_audio_probs(session, m, paths: list[str]) -> np.ndarray:
    """What a consumer of the ONNX file does: decode, cut into windows as attn does, one window
    per row at its own length, mean probability per clip."""
    from attn.features.audio import read_audio
    from attn.features.functional import window_spans

    f = m.recipe.features
    out = []
    for p in paths:
        x = read_audio(p, f.sample_rate)
        probs = [session.run(None, {"waveform": x[None, s : s + n]})[0][0]
                 for s, n in window_spans(len(x), f.frame_samples, f.hop_samples)]  # fmt: skip
        out.append(np.mean(probs, axis=0))
    return np.array(out)


def _text_rows(m, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch of the model's ids, as attn prepares them."""
    from attn.pipelines.data.batching import pad_rows
    from attn.pipelines.data.text import model_ids

    parts = [
        model_ids(m.loaded.tokenizer.encode_array(t), m.recipe.features.tokenizer.max_len, m.loaded.tokenizer)
        for t in texts
    ]
    return pad_rows(parts), np.array([len(p) for p in parts], dtype=np.int64)


@pytest.mark.parametrize("case", cases(AUDIO))
def test_onnx_audio_equals_predict_on_fsdd(fsdd, case):
    import torch

    from attn.pipelines.ship.export import read_metadata

    ort = pytest.importorskip("onnxruntime")
    tests = fsdd[2]
    kind = AUDIO[case][0]
    m, res = _audio_case(fsdd, case)
    assert res.max_abs_diff <= TOL
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    got = _onnx_audio_probs(session, m, tests)
    want = _predict_probs(m, tests)
    print(f"parity {case}: max abs diff {np.abs(got - want).max():.2g} over {len(tests)} FSDD clips")
    assert np.abs(got - want).max() <= TOL
    # A batch of clips cut to one length: rows are independent windows; and a window twice the
    # recipe's (a learned table is interpolated in the graph) still matches PyTorch.
    clips = [_read(p, m) for p in tests[:4]]
    x = np.stack([np.resize(w, 3000) for w in clips])
    batch = session.run(None, {"waveform": x})[0]
    single = np.concatenate([session.run(None, {"waveform": r[None]})[0] for r in x])
    assert batch.shape == (4, len(m.labels)) and np.abs(batch - single).max() <= 1e-5
    long = np.concatenate(clips)[None, : 2 * m.recipe.features.frame_samples]
    with torch.no_grad():
        ref = m.module(torch.from_numpy(long), torch.tensor([long.shape[1]])).softmax(-1).numpy()
    assert np.abs(session.run(None, {"waveform": long})[0] - ref).max() <= TOL
    meta = read_metadata(res.path)
    assert meta["labels"] == m.labels and meta["features"]["kind"] == kind and meta["features"]["sample_rate"] == 8000


def _read(p, m):
    from attn.features.audio import read_audio

    return read_audio(p, m.recipe.features.sample_rate)


@pytest.mark.parametrize("case", cases(TEXT))
def test_onnx_text_equals_predict_on_trec(trec, case):
    ort = pytest.importorskip("onnxruntime")
    texts = trec[3]
    ngrams = TEXT[case][1]
    m, res = _text_case(trec, case)
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    ids, lengths = _text_rows(m, texts)
    assert ids.ndim == (3 if ngrams else 2)
    got = session.run(None, {"ids": ids, "lengths": lengths})[0]
    want = _predict_probs(m, texts)
    print(f"parity text {case}: max abs diff {np.abs(got - want).max():.2g} over {len(texts)} TREC questions")
    assert np.abs(got - want).max() <= TOL


def test_predict_with_the_onnx_file_needs_no_torch(fsdd):
    """`attn predict --model model.onnx` (soundfile + numpy framing + onnxruntime) prints the
    records the .attn model prints, and never imports torch."""
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    tests = fsdd[2][:6]
    m, res = _audio_case(fsdd, "cnn-logmel")
    code = ("import sys, atexit; atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr)); "
            "from attn.cli.app import main; main()")  # fmt: skip
    args = ["predict", "--model", str(res.path), *tests, "--top-k", "3", "--per-frame", "-f", "jsonl"]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "TORCH False" in r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    want = m.predict(tests, top_k=3, per_frame=True)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["windows"] == w["windows"] and g["duration"] == w["duration"]
        assert abs(g["score"] - w["score"]) <= TOL
        assert [f["start"] for f in g["frames"]] == [f["start"] for f in w["frames"]]


def test_text_onnx_model_predicts_through_the_api(trec):
    pytest.importorskip("onnxruntime")
    texts = trec[3][:20] + ["   ", "Who is Zqxjk Wobbleton ?"]  # an empty text, an unknown name
    m, res = _text_case(trec, "transformer-ngrams")
    om = attn.load(res.path)
    assert om.labels == m.labels and om.modality == "text" and om.info()["format"] == "onnx"
    got, want = om.predict(texts, top_k=2), m.predict(texts, top_k=2)
    assert [g.get("error") for g in got] == [w.get("error") for w in want]
    for g, w in zip(got, want, strict=True):
        assert g.get("label") == w.get("label") and g.get("tokens") == w.get("tokens")
        assert abs(g.get("score", 0) - w.get("score", 0)) <= TOL
    with pytest.raises(attn.ConfigError, match="already an exported model"):
        om.export(res.path.with_suffix(".again.onnx"))
    from typer.testing import CliRunner  # and through `attn predict`: it failed on the .onnx of every text model

    from attn.cli.app import app

    r = CliRunner().invoke(app, ["predict", "-m", str(res.path), "--text", texts[0], "--format", "jsonl"])
    assert r.exit_code == 0 and json.loads(r.stdout)["label"] == want[0]["label"], r.output


@pytest.mark.parametrize("modality", ["text", pytest.param("audio", marks=pytest.mark.slow)])
def test_a_blend_with_the_baseline_exports_as_one_graph(fsdd, trec, modality):
    """Recipes blend the network with the run's baseline by default (train.blend): TF-IDF of the
    token 1-2-grams or MFCC statistics + logistic regression, inside the model. Its weight is
    set to 0.5 here (validation picks 0 or 1 on models this small), so both parts count."""
    ort = pytest.importorskip("onnxruntime")
    from attn.models.calibrated import untempered
    from attn.models.linear import Blend

    if modality == "text":
        tmp, train, test, texts = trec
        recipe = TREC_RECIPE.format(train=train, test=test, model=json.dumps(TEXT_CNN1D), ngrams="[2, 4]",
                                    word_ngrams=2, baseline="true")  # fmt: skip
    else:
        tmp, manifest, tests = fsdd
        recipe = FSDD_RECIPE.format(manifest=manifest, kind="logmel", model=json.dumps(AUDIO["cnn-logmel"][1]),
                                    ensemble=1, baseline="true")  # fmt: skip
    m = attn.load(_train(recipe, tmp, f"blend-{modality}"))
    blend = untempered(m.module)  # the run's temperature wraps the blend (and goes into the graph too)
    assert isinstance(blend, Blend)
    blend.weight = 0.5
    res = m.export(tmp / f"blend-{modality}.onnx")
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    if modality == "text":
        ids, lengths = _text_rows(m, texts)
        got, want = session.run(None, {"ids": ids, "lengths": lengths})[0], _predict_probs(m, texts)
    else:
        got, want = _onnx_audio_probs(session, m, tests), _predict_probs(m, tests)
    print(f"parity blend {modality}: max abs diff {np.abs(got - want).max():.2g}")
    assert np.abs(got - want).max() <= TOL
    # a deployer (and attn info on the .onnx) learns that the graph blends a baseline in, and how much
    from attn.pipelines.ship.export import read_metadata

    base = read_metadata(res.path)["baseline"]
    assert base["blend_weight"] == 0.5 and "(1 - 0.5) network + 0.5 baseline" in base["doc"]


@pytest.mark.slow
def test_ensemble_exports_as_one_graph(fsdd):
    ort = pytest.importorskip("onnxruntime")
    tmp, manifest, tests = fsdd
    recipe = FSDD_RECIPE.format(manifest=manifest, kind="logmel", model=json.dumps({"name": "cnn", "channels": [4, 8]}),
                                ensemble=2, baseline="false")  # fmt: skip
    m = attn.load(_train(recipe, tmp, "ensemble"))
    res = m.export(tmp / "ensemble.onnx")
    session = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    diff = np.abs(_onnx_audio_probs(session, m, tests) - _predict_probs(m, tests)).max()
    print(f"parity ensemble of 2 CNNs: max abs diff {diff:.2g} over {len(tests)} FSDD clips")
    assert diff <= TOL


def test_torchscript_equals_predict(fsdd, trec):
    import torch

    tmp, _, tests = fsdd
    m = _audio_model(fsdd, "transformer-patches-additive-learned")
    res = m.export(tmp / "audio.pt", format="torchscript")
    ts = torch.jit.load(str(res.path))

    class Session:  # the onnxruntime call shape, over the TorchScript module
        def run(self, _, feeds):
            return [ts(torch.from_numpy(feeds["waveform"])).numpy()]

    assert np.abs(_onnx_audio_probs(Session(), m, tests) - _predict_probs(m, tests)).max() <= TOL
    ttmp, texts = trec[0], trec[3]
    mt = _text_model(trec, "transformer-ngrams")
    tst = torch.jit.load(str(mt.export(ttmp / "text.pt", format="torchscript").path))
    ids, lengths = _text_rows(mt, texts)
    got = tst(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    assert np.abs(got - _predict_probs(mt, texts)).max() <= TOL


def test_info_and_evaluate_on_an_onnx_file(fsdd):
    pytest.importorskip("onnxruntime")
    m, res = _audio_case(fsdd, "cnn-logmel")
    r = runner.invoke(app, ["info", str(res.path), "--format", "json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["format"] == "onnx" and info["labels"] == m.labels
    source = m.info()
    assert info["parameters"] == source["parameters"] and info["metrics"]["accuracy"] == source["metrics"]["accuracy"]
    r = runner.invoke(app, ["evaluate", "-m", str(res.path)])
    assert r.exit_code == 2 and "needs the .attn model" in r.stderr


def test_cli_export_writes_metadata_and_json(trained_model, tmp_path):
    from attn.pipelines.ship.export import read_metadata

    out = tmp_path / "m.pt"  # TorchScript: seconds (the ONNX tests above cover the other format)
    r = runner.invoke(app, ["export", "-m", str(trained_model), "-f", "torchscript", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["path"] == str(out) and summary["max_abs_diff"] <= TOL
    assert summary["inputs"][0]["name"] == "waveform" and summary["inputs"][0]["shape"] == ["batch", "samples"]
    meta = read_metadata(out)
    m = attn.load(trained_model)
    assert meta["labels"] == m.labels and meta["modality"] == "audio"
    assert meta["features"]["sample_rate"] == 8000 and meta["features"]["n_mels"] == 24


def test_cli_export_errors_are_one_line(trained_model, tmp_path):
    r = runner.invoke(app, ["export", "-m", str(tmp_path / "nope.attn"), "--out", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["export", "-m", str(trained_model), "--format", "tflite"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["export", "-m", str(trained_model), "--out", str(tmp_path / "m.txt")])
    assert r.exit_code == 2 and "an ONNX file's name ends in .onnx" in r.output  # attn would not read m.txt back
    blocker = tmp_path / "a_file"  # a folder that cannot be made, even as root
    blocker.write_text("x")
    r = runner.invoke(app, ["export", "-m", str(trained_model), "--format", "torchscript", "--out",
                            str(blocker / "m.pt")])  # fmt: skip
    assert r.exit_code == 3 and "cannot write" in r.stderr and r.stderr.count("\n") == 1


def test_a_text_with_no_tokens_is_predicted_by_the_exported_model_as_by_the_model(tmp_path):
    """A tokenizer pattern that matches nothing in a text ("123 ?" under [a-z]+) gives it one
    <unk> with no n-gram column: the exported graph failed on it (a zero-width n-gram arange),
    taking the whole batch's records with it."""
    pytest.importorskip("onnxruntime")
    rows = [(f"{w} {v} it", lab) for w, lab in (("who", "HUM"), ("where", "LOC")) for v in ("is", "was", "made")]
    (tmp_path / "t.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows * 4))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data: {train: t.csv, val_fraction: 0.2, test_fraction: 0.0}\nfeatures:\n  kind: text\n  embed_dim: 8\n"
        "  tokenizer: {level: word, pattern: '[a-z]+', max_len: 8, char_ngrams: [2, 3], word_ngrams: 2}\n"
        "model: {name: cnn1d, filters: 8}\ntrain: {epochs: 1, batch_size: 8, baseline: false}\n"
    )
    res = attn.train(recipe, out=tmp_path / "run", device="cpu")
    m = attn.load(res.model_path)
    onnx = attn.load(m.export(tmp_path / "m.onnx").path)
    texts = ["who is it", "123 ?", "where was it"]
    got, want = onnx.predict(texts), m.predict(texts)
    assert [w["tokens"] for w in want] == [3, 0, 3] and all("error" not in g for g in got)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert np.allclose([g["score"] for g in got], [w["score"] for w in want], atol=TOL)
