"""Bad input catalog, third part (issue 22): labels and file names that are text to matplotlib
and Rich, runs that race for one folder, metadata that lies. One test per bug; each asserts what
a user sees (exit code, the one-line message, the files written)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()
SR = 8000
# Labels matplotlib would read as mathtext (one invalid, one valid), Rich as markup, and a
# terminal as an escape sequence (clear the screen).
ODD_LABELS = ["[/]", "$\\frac{1}{2}$", "$\\undefinedcmd{x}$", "[red]x[/red]", "wipe\x1b[2Jout", 'say "a: b"']
WORDS = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta", "iota kappa", "lambda mu"]
TEXT_RECIPE = """\
data: {train: t.csv, val_fraction: 0.2, test_fraction: 0.2}
features: {kind: text, embed_dim: 16, tokenizer: {level: word, max_len: 16}}
model: {name: cnn1d, filters: 8}
train: {epochs: 1, batch_size: 16, seed: 0}
"""
TINY_AUDIO = "data: {synthetic: {per_class: 4, seconds: 0.25}}\nmodel: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n"


def one_line_error(r, code: int, *words: str) -> str:
    err = r.stderr.strip()
    assert r.exit_code == code, r.output
    assert err.count("\n") == 0 and err.startswith("error: ") and "internal error" not in err, err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture(scope="module")
def odd_text_run(tmp_path_factory):
    """A tiny text model whose labels are mathtext and Rich markup; (run dir, train result)."""
    d = tmp_path_factory.mktemp("odd")
    with open(d / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(90):
            w.writerow([f"{WORDS[i % 6]} word{i % 7}", ODD_LABELS[i % 6]])
    (d / "r.yaml").write_text(TEXT_RECIPE)
    r = runner.invoke(app, ["train", str(d / "r.yaml"), "--out", str(d / "run")])
    assert r.exit_code == 0, r.output
    return d / "run", r


# -- 1. matplotlib reads $...$ as mathtext -------------------------------------------------------


def test_mathtext_labels_and_file_names_are_drawn_literally(odd_text_run, trained_model, tmp_path):
    run, trained = odd_text_run
    assert "report.html not written" not in trained.stderr and (run / "report.html").exists()
    (run / "report.html").unlink()
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0 and (run / "report.html").exists(), r.output
    r = runner.invoke(app, ["explain", "-m", str(run), "--text", "gamma delta", "--text", "eta", "--out",
                            str(tmp_path / "tx"), "--format", "json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert [Path(json.loads(x)["image"]).exists() for x in r.stdout.splitlines()] == [True, True]
    bad = write_wav(tmp_path / "a$\\bad$.wav", tone(440, 0.5, SR), SR)
    good = write_wav(tmp_path / "good.wav", tone(660, 0.5, SR), SR)
    r = runner.invoke(app, ["explain", "-m", str(trained_model), str(bad), str(good), "--out", str(tmp_path / "ax"),
                            "--format", "json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["input"] for x in r.stdout.splitlines()] == [str(bad), str(good)]
    # A valid expression is drawn as written too, not typeset ("1/2").
    from attn.pipelines import plots

    fig = plots.confusion_figure([[1, 0], [0, 1]], ["$\\frac{1}{2}$", "b"])
    plots.png_bytes(fig)
    ticks = fig.axes[0].get_xticklabels()
    assert ticks[0].get_text() == "$\\frac{1}{2}$" and not any(t.get_parse_math() for t in ticks)


# -- 2 and 12. an exported ONNX file only predicts -----------------------------------------------


def _onnx(path: Path, meta: dict[str, str], inputs=("waveform",), classes: int = 3, unused: bool = False) -> Path:
    """A tiny graph (mean of the samples times a row of weights, softmax) with `meta` attached;
    `unused`: also an initializer no node reads (onnxruntime warns that it removes it)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = [numpy_helper.from_array(np.linspace(-1, 1, classes, dtype=np.float32)[None], "w")]
    w += [numpy_helper.from_array(np.zeros(3, dtype=np.float32), "unused")] if unused else []
    nodes = [helper.make_node("ReduceMean", [inputs[0]], ["m"], axes=[1], keepdims=1),
             helper.make_node("MatMul", ["m", "w"], ["z"]),
             helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)]  # fmt: skip
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "samples"]) for n in inputs]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])
    model = helper.make_model(helper.make_graph(nodes, "g", ins, [out], w), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx_meta(trained_model):
    """The metadata `attn export` writes for the session's tiny audio model (3 labels)."""
    from attn.pipelines.artifact import load_model
    from attn.pipelines.export import metadata

    return metadata(load_model(trained_model), ["waveform"])


def test_explain_with_an_onnx_file_refuses_like_evaluate(onnx_meta, tmp_path):
    model = _onnx(tmp_path / "m.onnx", onnx_meta)
    clip = write_wav(tmp_path / "clip.wav", tone(440, 0.5, SR), SR)
    r = runner.invoke(app, ["predict", "-m", str(model), str(clip)])
    assert r.exit_code == 0 and json.loads(r.stdout)["label"] in json.loads(onnx_meta["labels"]), r.output
    r = runner.invoke(app, ["explain", "-m", str(model), str(clip)])
    one_line_error(r, 2, str(model), "attn explain needs the .attn model (an exported ONNX file only predicts)")


def test_features_and_tokenize_with_an_onnx_file_say_what_evaluate_says(onnx_meta, tmp_path):
    model = _onnx(tmp_path / "m.onnx", onnx_meta)
    clip = write_wav(tmp_path / "clip.wav", tone(440, 0.5, SR), SR)
    r = runner.invoke(app, ["features", str(clip), "-m", str(model), "--out", str(tmp_path / "f.npy")])
    one_line_error(r, 2, f"{model}: attn features needs the .attn model (an exported ONNX file only predicts)")
    r = runner.invoke(app, ["tokenize", "-m", str(model), "hello"])
    one_line_error(r, 2, f"{model}: attn tokenize needs the .attn model (an exported ONNX file only predicts)")
    r = runner.invoke(app, ["evaluate", "-m", str(model), str(tmp_path)])
    one_line_error(r, 2, f"{model}: attn evaluate needs the .attn model (an exported ONNX file only predicts)")


# -- 3. a text CSV too small to hold out val/test ------------------------------------------------


def test_a_four_row_text_csv_trains_with_its_baseline(tmp_path):
    (tmp_path / "s.csv").write_text("text,label\nhello there,a\nbye now,b\nhi again,a\nsee you,b\n")
    recipe = "data: {train: s.csv}\nfeatures: {kind: text, embed_dim: 8, tokenizer: {max_len: 8}}\n"
    (tmp_path / "s.yaml").write_text(recipe + "model: {name: cnn1d, filters: 4}\ntrain: {epochs: 1}\n")
    r = runner.invoke(app, ["train", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "run"), "--format", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert (tmp_path / "run" / "model.attn").exists() and summary["baseline"]["kind"] == "tfidf+logreg"


# -- 4. label order a pure function of the data ---------------------------------------------------

_ORDER = """
from attn.pipelines.sources import Item, collect_labels
items = [Item(str(i), lab, "train") for i, lab in enumerate(["2", "1.0", "01", "1", "10", "1e0"])]
print(collect_labels({"train": items, "val": [], "test": []}))
"""


def test_labels_equal_as_numbers_are_ordered_the_same_under_every_hash_seed():
    import os

    orders = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, "-c", _ORDER], env=env, capture_output=True, text=True, check=True)
        orders.add(out.stdout.strip())
    assert orders == {"['01', '1', '1.0', '1e0', '2', '10']"}


# -- 5. two runs into one --out ------------------------------------------------------------------


def test_two_runs_started_together_into_one_folder_one_gets_exit_3(tmp_path, monkeypatch):
    """Both runs pass the "is it empty?" check before either writes anything (a barrier holds them
    there); exactly one may take the folder."""
    from attn.pipelines import rundir

    out = tmp_path / "same"
    barrier = threading.Barrier(2, timeout=20)
    real = rundir.make_dirs

    def make_dirs(p):
        barrier.wait()  # both runs are past the emptiness check here
        return real(p)

    monkeypatch.setattr(rundir, "make_dirs", make_dirs)
    results: list = []

    def run():
        try:
            results.append(rundir.new_run_dir(None, str(out)))
        except Exception as e:  # noqa: BLE001 - the test looks at which error
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    errors = [e for e in results if isinstance(e, Exception)]
    assert len(results) == 2 and len(errors) == 1, results
    assert errors[0].exit_code == 3 and "cannot write (another run" in str(errors[0]) and str(out) in str(errors[0])


def test_a_run_started_while_another_writes_the_folder_gets_exit_3(tmp_path):
    """The first run's files are there and its process is alive: the second is told so (exit 3),
    not to resume a run still going; once that process is gone, the usual advice (exit 2)."""
    import os
    import socket

    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_AUDIO)
    out = tmp_path / "same"
    out.mkdir()
    (out / "train.log").write_text("the first run's log\n")
    (out / ".attn-run.lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")  # a live process
    r = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    one_line_error(r, 3, f"--out {out}: cannot write (another run, process {os.getpid()}, is writing into it)")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".attn-run.lock").write_text(f"{gone.stdout.strip()} {socket.gethostname()}\n")  # a killed run's
    r = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    one_line_error(r, 2, "directory exists and is not empty (use --resume")
    assert (out / "train.log").read_text() == "the first run's log\n"


# -- 6. tune --out with other data ---------------------------------------------------------------


def test_tune_refuses_to_join_a_study_on_other_data(tmp_path):
    from test_tune import write_recipe

    recipe = write_recipe(tmp_path, epochs=1)
    args = ["tune", str(recipe), "--out", str(tmp_path / "t"), "--trials", "1", "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    trials = (tmp_path / "t" / "trials.jsonl").read_text()
    r = runner.invoke(app, [*args, "--set", "data.synthetic.per_class=20"])
    one_line_error(r, 2, "holds a tune of other data")
    assert (tmp_path / "t" / "trials.jsonl").read_text() == trials
    r = runner.invoke(app, args)  # the same data joins, as before
    assert r.exit_code == 0, r.output


# -- 7. Rich markup in labels ---------------------------------------------------------------------


def test_markup_labels_are_shown_as_written_in_tables(odd_text_run):
    run, _ = odd_text_run
    r = runner.invoke(app, ["predict", "-m", str(run), "--text", "alpha beta", "--format", "table", "--top-k", "6"])
    assert r.exit_code == 0, r.output
    assert "[/]" in r.stdout and "[red]x[/red]" in r.stdout
    r = runner.invoke(app, ["evaluate", "-m", str(run), str(run.parent / "t.csv")])
    assert r.exit_code == 0, r.output
    header = next(x for x in r.stdout.splitlines() if "$\\frac{1" in x and "[/]" in x)
    assert "[red]x[/" in header  # the confusion header's cut label, still literal


# -- 8. --out naming a file ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "tune"])
def test_out_naming_a_file_is_exit_3(command, tmp_path):
    from test_tune import write_recipe

    recipe = write_recipe(tmp_path, epochs=1)
    (tmp_path / "taken").write_text("precious")
    for out in (str(tmp_path / "taken"), "/dev/null"):
        r = runner.invoke(app, [command, str(recipe), "--out", out, "--trials" if command == "tune" else "--quiet",
                                *(["1"] if command == "tune" else [])])  # fmt: skip
        one_line_error(r, 3, f"--out {out}: cannot write (not a directory)")
    assert (tmp_path / "taken").read_text() == "precious"


# -- 9. ONNX metadata that lies ------------------------------------------------------------------


def _lie(key, value):
    def make(meta):
        meta = dict(meta)
        if key == "features":
            meta["features"] = json.dumps(value(json.loads(meta["features"])))
        else:
            meta[key] = value
        return meta

    return make


def _features(**kv):
    return _lie("features", lambda f: {**f, **kv})


LIES = [
    ("sample_rate abc", _features(sample_rate="abc"), {}, "features.sample_rate"),
    ("sample_rate 0", _features(sample_rate=0), {}, "features.sample_rate"),
    ("features a list", _lie("features", lambda f: [f]), {}, "features is a list"),
    ("labels shorter than the outputs", _lie("labels", json.dumps(["a", "b"])), {}, "2 labels for a graph of 3"),
    ("labels a JSON string", _lie("labels", json.dumps("abc")), {}, "labels must be a non-empty list"),
    ("a foreign graph", lambda m: m, {"inputs": ("x",)}, "the graph's inputs ['x']"),
    ("frame_seconds 1e9", _features(frame_seconds=1e9, hop_seconds=1e9), {}, "a window of 8000000000000 samples"),
]


@pytest.mark.parametrize("name, lie, graph, says", LIES, ids=[c[0] for c in LIES])
def test_onnx_metadata_that_lies_is_damaged_metadata(name, lie, graph, says, onnx_meta, tmp_path):
    model = _onnx(tmp_path / "m.onnx", lie(onnx_meta), **graph)
    clip = write_wav(tmp_path / "clip.wav", tone(440, 0.5, SR), SR)
    r = runner.invoke(app, ["predict", "-m", str(model), str(clip)])
    one_line_error(r, 2, f"{model}: damaged attn metadata", says)
    assert r.stdout == ""
    one_line_error(runner.invoke(app, ["info", str(model)]), 2, f"{model}: damaged attn metadata", says)


# -- 10. report.html from metrics.json fields that are not numbers -------------------------------


def _metrics(**kv):
    return {"split": "test", "count": 4, "accuracy": 0.5, "macro_f1": 0.5, "labels": ["a", "b"],
            "confusion": [[1, 1], [1, 1]], "per_class": {"a": {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                                                "support": 2}}, **kv}  # fmt: skip


@pytest.mark.parametrize(
    "metrics",
    [
        _metrics(members=[{"member": 1, "seed": "<script>alert(1)</script>", "val_accuracy": "<b>x</b>"}]),
        _metrics(accuracy="high", macro_f1=None, confusion="<script>", per_class={"a": {"precision": "<i>p</i>"}}),
        _metrics(split="<script>", confusion=[[1, "x"], [True, 1]]),
    ],
    ids=["script in a member's seed", "accuracy a word", "split and confusion not what they say"],
)
def test_report_escapes_and_type_checks_what_it_reads(metrics, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "history.jsonl").write_text('{"epoch": 1, "train_loss": "nan?", "val_accuracy": 0.5}\n{"epoch": "x"}\n')
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text()
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page


# -- 11. a YAML alias bomb ------------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    from attn.errors import ConfigError
    from attn.pipelines.recipe import parse_yaml

    lines, prev = ['  a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]'], "a"
    for name in "bcdefghi":  # 9 ** 9: 387 million strings once expanded
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    text = "data: {synthetic: {per_class: 4}}\njunk:\n" + "\n".join(lines) + "\n"
    with pytest.raises(ConfigError, match="aliases"):
        parse_yaml(text, "bomb.yaml")  # before anything walks the expanded tree
    (tmp_path / "bomb.yaml").write_text(text)
    r = runner.invoke(app, ["train", str(tmp_path / "bomb.yaml"), "--out", str(tmp_path / "run")])
    one_line_error(r, 2, "bomb.yaml: the recipe expands to over 100,000 values through YAML aliases")
    # A recipe with an ordinary alias still loads.
    from attn.pipelines.recipe import load_recipe

    (tmp_path / "ok.yaml").write_text("data: {synthetic: {per_class: 4}}\nmodel: &m {name: cnn, channels: [4]}\n")
    assert load_recipe(tmp_path / "ok.yaml").model.name == "cnn"


# -- 13. a long extends chain --------------------------------------------------------------------


def test_a_chain_of_1500_extends_is_a_clear_error(tmp_path):
    for i in range(1500):
        body = f"extends: r{i + 1}.yaml\n" if i < 1499 else TINY_AUDIO
        (tmp_path / f"r{i}.yaml").write_text(body)
    r = runner.invoke(app, ["train", str(tmp_path / "r0.yaml"), "--out", str(tmp_path / "run")])
    one_line_error(r, 2, "a chain of more than 64 recipes", "r0.yaml")
    assert not (tmp_path / "run").exists()
    from attn.pipelines.recipe import load_recipe

    assert load_recipe(tmp_path / "r1450.yaml").model.name == "cnn"  # a chain of 50 still loads


# -- questionable, decided (docs/errors.md) ------------------------------------------------------


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

    from attn.pipelines import plots

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
    assert recs[0]["warning"] == predicted["warning"] and "under a tenth" in recs[0]["warning"]
    assert "warning" not in recs[1] and '1 of 2 input(s) have a warning (see their "warning" field)' in r.stderr


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
    from attn.pipelines.config import DataConfig
    from attn.pipelines.sources import list_items

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
    from attn.pipelines import export

    def never(*a, **k):
        raise AssertionError("exported before --out was checked")

    monkeypatch.setattr(export, "_onnx_bytes", never)
    monkeypatch.setattr(export, "_torchscript_bytes", never)
    (tmp_path / "file").write_text("x")
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / "file" / "m.bin"
        r = runner.invoke(app, ["export", "-m", str(trained_model), "--format", fmt, "--out", str(out)])
        one_line_error(r, 3, f"{out}: cannot write")
    r = runner.invoke(app, ["export", "-m", str(trained_model), "--out", str(tmp_path)])
    one_line_error(r, 3, f"{tmp_path}: cannot write (a directory)")


def test_divergence_in_the_first_epoch_does_not_promise_a_checkpoint(tmp_path):
    from test_tune import write_recipe

    recipe = write_recipe(tmp_path, epochs=2)
    overrides = ["--set", "train.lr=1e8", "--set", "train.batch_size=2", "--set", "train.grad_clip=0"]
    r = runner.invoke(app, ["train", str(recipe), *overrides, "--out", str(tmp_path / "run"), "--quiet"])
    err = one_line_error(r, 1, "training diverged", "at epoch 1", "no epoch finished, so nothing is kept")
    assert "checkpoint is kept" not in err and not (tmp_path / "run").exists()


def test_onnxruntime_warnings_do_not_reach_stderr(onnx_meta, tmp_path):
    model = _onnx(tmp_path / "m.onnx", onnx_meta, unused=True)
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


def test_tensorboard_draws_mathtext_labels_literally(tmp_path):
    pytest.importorskip("tensorboard")
    from attn.pipelines.recipe import resolve_recipe
    from attn.pipelines.tensorboard import TensorBoardCallback

    tb = TensorBoardCallback(tmp_path / "tb", resolve_recipe({"data": {"synthetic": {"per_class": 4}}}), tmp_path)
    tb.on_epoch_end({"epoch": 1, "train_loss": 1.0})
    metrics = {"split": "test", "accuracy": 0.5, "macro_f1": 0.5, "labels": ["$\\undefinedcmd{x}$", "b"],
               "confusion": [[1, 1], [1, 1]]}  # fmt: skip
    tb.on_train_end(metrics)  # draws the confusion matrix image
    assert any((tmp_path / "tb").iterdir())
