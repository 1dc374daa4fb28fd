"""report.html: written by every training and by `attn report RUN`; one self-contained page that a
real browser renders with every image loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()
SECTIONS = ("Learning curves", "Confusion matrix", "Per class", "Data", "Most confidently wrong", "Recipe")


def _images(page: str) -> list[str]:
    return re.findall(r"<img [^>]*src='([^']*)'", page)


def assert_self_contained(page: str) -> None:
    """Every image inline, nothing fetched: no URL, no external script or stylesheet."""
    srcs = _images(page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"https?://|<link|<script|url\(", page)


def test_training_writes_the_report(trained_model):
    run = trained_model.parent
    page = (run / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    for section in SECTIONS:
        assert f"<h2>{section}" in page, section
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['accuracy']:.4f}" in page
    if metrics.get("baseline"):  # train.baseline: the classical baseline's scores beside the model's
        assert "Model and baseline" in page and f"{metrics['baseline']['accuracy']:.4f}" in page
    for label in metrics["labels"]:  # the per-class table and the data table name every class
        assert page.count(f"<td>{label}</td>") >= 2
    assert len(_images(page)) >= 2  # curves and matrix (and a log-mel per wrong clip)
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert all(0 <= h["train_accuracy"] <= 1 for h in history)  # the curves' train accuracy


def test_attn_report_regenerates_and_refuses_what_is_not_a_run(trained_model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_model.parent, run)
    (run / "report.html").unlink()
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(run / "report.html") and (run / "report.html").stat().st_size > 10_000
    r = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "nothing: no such run directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "empty: not a run directory" in r.stderr
    (tmp_path / "empty" / "m.onnx").write_bytes(b"x")
    r = runner.invoke(app, ["report", str(tmp_path / "empty" / "m.onnx")])
    assert r.exit_code == 2 and "m.onnx: a report is of a run directory" in r.stderr  # it named "."


def test_the_baseline_is_shown_beside_the_model(trained_model, tmp_path):
    import attn

    run = tmp_path / "run"
    shutil.copytree(trained_model.parent, run)
    m = json.loads((run / "metrics.json").read_text())
    m["baseline"] = {"kind": "mfcc-logreg", "accuracy": 0.4321, "macro_f1": 0.4123, "val_accuracy": 0.4444,
                     "val_macro_f1": 0.4012, "seconds": 1.5}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(m))
    page = attn.report(run).read_text(encoding="utf-8")
    assert "Model and baseline" in page and "mfcc-logreg" in page
    assert all(v in page for v in ("0.4321", "0.4123", "0.4444", "0.4012"))


@pytest.fixture(scope="module")
def folder_ensemble(tmp_path_factory):
    """An ensemble of 2 trained on a folder of files (one epoch each)."""
    import attn

    d = tmp_path_factory.mktemp("ens")
    for i in range(12):
        label, freq = ("low", 300) if i % 2 else ("high", 2000)
        write_wav(d / "data" / label / f"{i:02d}.wav", tone(freq, 0.5, 8000, seed=i), 8000)
    (d / "ens.yaml").write_text(
        "data: {root: data, val_fraction: 0.25, test_fraction: 0.25}\n"
        "features: {sample_rate: 8000, frame_seconds: 0.5, n_fft: 256, hop_length: 128, n_mels: 16}\n"
        "model: {name: cnn, channels: [4]}\n"
        "train: {epochs: 2, batch_size: 4, ensemble: 2}\n"
    )
    return attn.train(d / "ens.yaml", out=d / "run", device="cpu").run_dir


def test_an_ensemble_s_report_and_one_whose_data_is_gone(folder_ensemble, tmp_path):
    import attn

    page = (folder_ensemble / "report.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert "Ensemble members" in page and all(f"<h2>{s}" in page for s in SECTIONS)
    assert "<th>low</th>" not in page and page.count("<td>low</td>") >= 2
    run = tmp_path / "run"
    shutil.copytree(folder_ensemble, run)
    shutil.rmtree(folder_ensemble.parent / "data")
    page = attn.report(run).read_text(encoding="utf-8")
    assert "Data not available" in page and "<h2>Learning curves" in page and "<h2>Confusion matrix" in page


def test_a_text_model_s_wrong_examples_show_their_text(tmp_path):
    import attn

    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for i in range(60):  # the label is mostly, not always, given by the first word: some errors stay
        first = ("red", "blue")[i % 2]
        label = ("r", "b")[(i % 2) ^ (rng.random() < 0.2)]
        rows.append(f"{first} item number {i},{label}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "t.yaml").write_text(
        "data: {train: t.csv, val_fraction: 0.2, test_fraction: 0.3}\n"
        "features: {kind: text, tokenizer: {level: word, max_len: 8}, embed_dim: 16}\n"
        "model: {name: transformer, d_model: 16, heads: 2, layers: 1, ff_dim: 32}\n"
        "train: {epochs: 3, batch_size: 8, lr: 0.01}\n"
    )
    run = attn.train(tmp_path / "t.yaml", out=tmp_path / "run", device="cpu").run_dir
    page = (run / "report.html").read_text(encoding="utf-8")
    wrong = page[page.index("<h2>Most confidently wrong") :]
    assert re.search(r"<td[^>]*>(red|blue) item number \d+</td>", wrong)
    assert "truncated" in page  # the data facts training recorded


# -- in a real browser ---------------------------------------------------------------------------


def browser() -> str:
    """Chromium's path; skips without one, except in CI (CI=1/true) or with ATTN_REQUIRE_BROWSER=1."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("ATTN_REQUIRE_BROWSER") == "1":
        pytest.fail("no Chromium found (CI installs it with apt-get install chromium)")
    pytest.skip("no Chromium on this machine (apt-get install chromium)")


def headless(exe: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]  # fmt: skip
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


# Appended to a copy of the page: after load, write each image's decoded size into the DOM.
PROBE = """<script>window.addEventListener("load", () => {
  const sizes = Array.from(document.images, i => i.naturalWidth + "x" + i.naturalHeight);
  document.body.setAttribute("data-images", sizes.join(" "));
});</script>"""


def test_the_report_renders_in_a_browser_with_every_image(trained_model, tmp_path):
    from PIL import Image

    exe = browser()
    page = (trained_model.parent / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    r = headless(exe, tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r'data-images="([^"]*)"', r.stdout)
    assert found, r.stderr[-2000:]
    sizes = [tuple(map(int, s.split("x"))) for s in found.group(1).split()]
    assert len(sizes) == len(_images(page)) and all(w > 0 and h > 0 for w, h in sizes), sizes
    shot = tmp_path / "shot.png"
    report = (trained_model.parent / "report.html").as_uri()
    headless(exe, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", report)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200) and pixels.std() > 20  # a blank page has ~0
    assert (pixels < 128).mean() > 0.01  # text, axes and heat map cells, not only background


def test_predict_and_help_do_not_import_matplotlib(trained_model, tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(440, 0.5, 8000), 8000)
    for args in (["--help"], ["report", "--help"], ["explain", "--help"],
                 ["predict", "-m", str(trained_model), str(wav), "--format", "jsonl"]):  # fmt: skip
        code = (f"import sys\nfrom attn.cli.app import app\ntry: app({args!r})\nexcept SystemExit as e: "
                "assert not e.code, e.code\nassert 'matplotlib' not in sys.modules, 'matplotlib imported'")  # fmt: skip
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (args, r.stderr[-1000:])


def test_a_quickstart_training_decodes_its_test_split_once(tmp_path, monkeypatch):
    """The report at the end of training is built from what training scored: every listed example
    (test split included) is generated once, and the page is the one `attn report` writes later
    by listing, decoding and scoring the test split again."""
    import attn.pipelines.data.synthetic as synthetic

    calls = []
    real = synthetic.generate_clip

    def counted(kind, rng, seconds, sr):
        calls.append(kind)
        return real(kind, rng, seconds, sr)

    monkeypatch.setattr(synthetic, "generate_clip", counted)
    run = tmp_path / "q"
    r = runner.invoke(app, ["train", "recipes/quickstart.yaml", "--out", str(run), "--quiet",
                            "--set", "data.synthetic.per_class=10", "--set", "train.epochs=1",
                            "--set", "model.channels=[4,8]"])  # fmt: skip
    assert r.exit_code == 0, r.output
    listed = json.loads((run / "metrics.json").read_text())
    assert listed["split"] == "test" and listed["count"] > 0
    assert len(calls) == 6 * 10  # six classes, ten examples each: each generated once, test included
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<h2>Most confidently wrong" in page and "test windows" in page

    calls.clear()
    (run / "report.html").unlink()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    assert len(calls) == listed["count"]  # `attn report` decodes and scores the test split again ...
    again = (run / "report.html").read_text(encoding="utf-8")
    assert again == page  # ... and finds what training handed over


def test_the_reports_label_list_quotes_a_label_with_a_comma(tmp_path):
    from attn.pipelines.ship.report import _head

    header = {"labels": ["dog", "rain, heavy"], "recipe": {"model": {"name": "cnn"}}}
    page = _head(tmp_path, header, None, [])
    assert "dog, &quot;rain, heavy&quot;" in page or 'dog, "rain, heavy"' in page  # two labels, not three


def test_the_model_column_gives_the_saved_models_validation_accuracy_when_blended():
    """With the baseline blended in, history's validation accuracy is the network's alone: it
    stood in the "model" column beside the saved (blended) model's test figures."""
    from attn.pipelines.ship.report import _baseline

    metrics = {
        "accuracy": 0.81,
        "macro_f1": 0.8,
        "baseline": {"accuracy": 0.7, "val_accuracy": 0.72, "seconds": 0.15},
        "blend": {"weight": 0.95, "val_accuracy_network": 0.44, "val_accuracy_blend": 0.76},
    }
    page = _baseline(metrics, [{"epoch": 3, "best": True, "val_accuracy": 0.44, "val_macro_f1": 0.37}], {})
    assert "<th>validation accuracy</th><td>0.7600</td><td>0.7200</td>" in page
    assert "<th>validation accuracy (network alone)</th><td>0.4400</td>" in page and "<td>0.1</td>" in page
