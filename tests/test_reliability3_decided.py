"""Issue 22's questionable items, decided (docs/errors.md, "Rules for text that is the user's"
and "Rules for runs, tunes and exported files"): each test asserts the decided behaviour."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import ODD_LABELS, one_line_error, tiny_onnx, tone, write_wav

runner = CliRunner()
SR = 8000
TINY_AUDIO = "data: {synthetic: {per_class: 4, seconds: 0.25}}\nmodel: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n"


def test_escape_sequences_in_labels_never_reach_the_terminal(odd_text_run):
    run, _ = odd_text_run
    for args in (["info", str(run)], ["predict", "-m", str(run), "--text", "iota kappa", "--format", "table"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.stdout and "wipe\\x1b[2Jout" in r.stdout


@pytest.mark.parametrize(
    "override, says",
    [
        ("train.epochs=-1", "train.epochs: Input should be greater than 0 (or 'auto') (got -1)"),
        ("train.lr=.inf", "train.lr: Input should be a finite number (got inf)"),
        ("features.frame_seconds=.inf", "features.frame_seconds: Input should be a finite number (or 'auto')"),
        (
            "train.augment.freq_mask=1000",
            "train.augment.freq_mask (1000) is wider than the features' 40 frequency bins",
        ),
    ],
)
def test_recipe_values_that_mean_nothing_are_refused_in_plain_words(override, says, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_AUDIO + "features: {sample_rate: 8000, n_fft: 256, hop_length: 128, n_mels: 40}\n")
    r = runner.invoke(app, ["train", str(recipe), "--set", override, "--out", str(tmp_path / "run")])
    err = one_line_error(r, 2, says)
    assert "constrained-" not in err and "more problem" not in err and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def one_trial_tune(tmp_path_factory):
    from test_tune import write_recipe

    d = tmp_path_factory.mktemp("tune1")
    recipe = write_recipe(d, epochs=1)
    r = runner.invoke(app, ["tune", str(recipe), "--out", str(d / "t"), "--trials", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    return recipe, d / "t"


def test_resume_after_the_study_database_was_deleted_refuses(one_trial_tune, tmp_path):
    import shutil

    _, tdir = one_trial_tune
    copy = tmp_path / "t"
    shutil.copytree(tdir, copy, symlinks=True)
    (copy / "study.db").unlink()
    r = runner.invoke(app, ["tune", "--resume", str(copy), "--trials", "2"])
    one_line_error(r, 2, f"{copy}: study.db is missing", "nothing to resume")
    assert not (copy / "study.db").exists()


def test_a_storage_password_is_masked_in_tune_json_and_kept_owner_only(one_trial_tune, tmp_path):
    recipe, _ = one_trial_tune
    url = "postgresql://ann:s3cret@127.0.0.1:9/attn"
    r = runner.invoke(app, ["tune", str(recipe), "--out", str(tmp_path / "t"), "--storage", url, "--trials", "1"])
    assert r.exit_code == 2 and "s3cret" not in r.output and "ann:***@127.0.0.1" in r.stderr, r.output
    settings = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert settings["storage"] == "postgresql://ann:***@127.0.0.1:9/attn"
    secret = tmp_path / "t" / "storage.url"
    assert secret.read_text().strip() == url and secret.stat().st_mode & 0o777 == 0o600
    r = runner.invoke(app, ["tune", "--resume", str(tmp_path / "t")])  # resume connects with the password
    assert r.exit_code == 2 and "cannot open" in r.stderr and "s3cret" not in r.output, r.output


def test_glyphs_missing_from_the_font_draw_without_warnings_on_stderr():
    import warnings

    from attn.pipelines.infer import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = plots.png_bytes(plots.confusion_figure([[2, 0], [1, 1]], ["猫", "犬\x07"]))
    assert png.startswith(b"\x89PNG")


def test_explain_warns_of_a_one_sample_file_as_predict_does(trained_model, tmp_path):
    import numpy as np
    import soundfile as sf

    one = tmp_path / "one.wav"
    sf.write(str(one), np.array([0.1], dtype=np.float32), SR)
    good = write_wav(tmp_path / "good.wav", tone(440, 0.5, SR), SR)
    predicted = json.loads(runner.invoke(app, ["predict", "-m", str(trained_model), str(one)]).stdout)
    r = runner.invoke(app, ["explain", "-m", str(trained_model), str(one), str(good), "--format", "json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    # predict's warning, then (a blended model) explain's own note on the network's share of the scores
    assert recs[0]["warning"].startswith(predicted["warning"]) and "under a tenth" in recs[0]["warning"]
    blend = "the model blends its baseline in"  # explain's own note, on every record of a mostly-baseline model
    assert recs[1].get("warning", blend).startswith(blend)
    warned = 1 + ("warning" in recs[1])
    assert f'{warned} of 2 input(s) have a warning (see their "warning" field)' in r.stderr


def test_explain_text_output_shows_the_png_path_and_empty_folders_read_as_in_predict(
    odd_text_run, trained_model, tmp_path
):
    run, _ = odd_text_run
    r = runner.invoke(app, ["explain", "-m", str(run), "--text", "alpha beta", "--out", str(tmp_path / "png"),
                            "--format", "text"])  # fmt: skip
    assert r.exit_code == 0 and str(tmp_path / "png" / "001-alpha_beta.png") in r.stdout, r.output
    (tmp_path / "empty").mkdir()
    said = []
    for command in ("predict", "explain"):
        r = runner.invoke(app, [command, "-m", str(trained_model), str(tmp_path / "empty")])  # JSON lines
        assert r.exit_code == 1, r.output
        said.append(json.loads(r.stdout)["error"])
    assert said[0] == said[1] == f"{tmp_path / 'empty'}: directory contains no audio files"


def test_json_boolean_labels_keep_their_json_spelling(tmp_path):
    from attn.pipelines.data.sources import list_items
    from attn.pipelines.recipe.config import DataConfig

    rows = [{"text": f"t{i}", "label": [True, False, 1.5, None, "x"][i % 5]} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["label"] is not None))
    items = list_items(DataConfig(manifest=str(tmp_path / "d.jsonl")), "text")
    assert sorted({it.label for it in items}) == ["1.5", "false", "true", "x"]


def test_a_text_model_refuses_a_binary_file_once(odd_text_run, tmp_path):
    run, _ = odd_text_run
    wav = write_wav(tmp_path / "clip.wav", tone(440, 2.0, SR), SR)
    (tmp_path / "q.txt").write_text("alpha beta\n")
    r = runner.invoke(app, ["predict", "-m", str(run), str(wav), str(tmp_path / "q.txt")])
    assert r.exit_code == 1, r.output
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    why = "not a text file (binary data; a text model reads UTF-8 text, one per line)"
    assert len(recs) == 2 and recs[0] == {"input": str(wav), "error": f"{wav}: {why}"}
    assert recs[1]["label"] in ODD_LABELS and "1 of 2 input(s) failed" in r.stderr
    (tmp_path / "w.txt").write_bytes("alpha beta\n".encode("utf-16"))  # Windows "Unicode": a BOM, then NULs
    r = runner.invoke(app, ["predict", "-m", str(run), str(tmp_path / "w.txt")])
    assert r.exit_code == 1 and "w.txt: UTF-16 text; a text model reads UTF-8" in r.stdout


@pytest.mark.parametrize("command", ["train", "tune", "explain", "export", "features"])
def test_out_dash_is_refused_rather_than_a_file_named_dash(command, trained_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = {"train": ["train", "r.yaml"], "tune": ["tune", "r.yaml"], "explain": ["explain", "-m", str(trained_model),
            "x.wav"], "export": ["export", "-m", str(trained_model)],
            "features": ["features", "x.wav", "-m", str(trained_model)]}[command]  # fmt: skip
    (tmp_path / "r.yaml").write_text(TINY_AUDIO)
    write_wav(tmp_path / "x.wav", tone(440, 0.5, SR), SR)
    r = runner.invoke(app, [*args, "--out", "-"])
    one_line_error(r, 2, "--out -: this command writes files, not to stdout")
    assert not (tmp_path / "-").exists()


def test_export_checks_out_before_exporting(trained_model, tmp_path, monkeypatch):
    from attn.pipelines.ship import export

    def never(*a, **k):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(export, "_onnx_bytes", never)
    monkeypatch.setattr(export, "_torchscript_bytes", never)
    (tmp_path / "file").write_text("x")
    onnx = importlib.util.find_spec("onnx") is not None  # without the export extra, ONNX refuses before --out
    for fmt in ("onnx", "torchscript") if onnx else ("torchscript",):
        out = tmp_path / "file" / ("m.onnx" if fmt == "onnx" else "m.bin")
        r = runner.invoke(app, ["export", "-m", str(trained_model), "--format", fmt, "--out", str(out)])
        one_line_error(r, 3, f"{out}: cannot write")
    r = runner.invoke(
        app, ["export", "-m", str(trained_model), "--out", str(tmp_path)] + ([] if onnx else ["-f", "torchscript"])
    )
    one_line_error(r, 3, f"{tmp_path}: cannot write (a directory)")


def test_divergence_in_the_first_epoch_does_not_promise_a_checkpoint(tmp_path):
    from test_tune import write_recipe

    recipe = write_recipe(tmp_path, epochs=2)
    overrides = ["--set", "train.lr=1e8", "--set", "train.batch_size=2", "--set", "train.grad_clip=0"]
    r = runner.invoke(app, ["train", str(recipe), *overrides, "--out", str(tmp_path / "run"), "--quiet"])
    err = one_line_error(r, 1, "training diverged", "at epoch 1", "no epoch finished, so nothing is kept")
    assert "checkpoint is kept" not in err and not (tmp_path / "run").exists()


def test_onnxruntime_warnings_do_not_reach_stderr(onnx_meta, tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", onnx_meta, unused=True)
    clip = write_wav(tmp_path / "clip.wav", tone(440, 0.5, SR), SR)
    r = subprocess.run([sys.executable, "-m", "attn.cli", "predict", "-m", str(model), str(clip)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout)["windows"] == 1, r.stderr
    assert r.stderr == ""


def test_a_tune_interrupted_in_the_untuned_trial_reports_it_consistently(tmp_path):
    from test_tune import write_recipe

    import attn

    class CtrlC:
        def on_epoch_end(self, record):
            raise KeyboardInterrupt

    recipe = write_recipe(tmp_path, epochs=1)
    with pytest.raises(attn.errors.Interrupted):
        attn.tune(recipe, trials=2, out=tmp_path / "t", device="cpu", callbacks=CtrlC())
    r = runner.invoke(app, ["tune", "--resume", str(tmp_path / "t"), "--quiet"])
    assert r.exit_code == 0, r.output
    rows = {int(x.split()[0]): x for x in r.stdout.splitlines() if x.strip()[:1].isdigit()}
    assert "failed (interrupted)" in rows[0] and "*" not in rows[0]  # it ran again, as trial 1
    assert "complete *" in rows[1]
    assert "2 complete, 0 pruned, 0 failed, 1 interrupted (run again) of 2" in r.stdout
    assert "* = the recipe as written" in r.stdout


def test_csv_top_k_cells_split_one_way_for_labels_with_spaces_and_colons(odd_text_run):
    import io
    import shlex

    run, _ = odd_text_run
    r = runner.invoke(app, ["predict", "-m", str(run), "--text", "lambda mu", "--format", "csv", "--top-k", "6"])
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    pairs = [p.rsplit(":", 1) for p in shlex.split(row["top_k"], posix=True)]
    assert sorted(label for label, _ in pairs) == sorted(ODD_LABELS) and all(float(s) >= 0 for _, s in pairs)


def test_an_internal_error_and_a_failed_report_are_one_line(trained_model, tmp_path, monkeypatch):
    from attn.pipelines.ship import report
    from attn.pipelines.store import artifact

    def multi_line(*a, **k):
        raise ValueError("first line\n  ^\nthird line")

    monkeypatch.setattr(artifact, "read_info", multi_line)
    r = runner.invoke(app, ["info", str(trained_model)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "ValueError: first line ^ third line" in r.stderr
    monkeypatch.setattr(report, "write_report", multi_line)
    (tmp_path / "r.yaml").write_text(TINY_AUDIO)
    r = runner.invoke(app, ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 0 and (tmp_path / "run" / "model.attn").exists(), r.output
    warning = [x for x in r.stderr.splitlines() if "report.html not written" in x]
    assert warning == ["attn: warning: report.html not written (ValueError: first line ^ third line); retry with: "
                       f"attn report {tmp_path / 'run'}"]  # fmt: skip
