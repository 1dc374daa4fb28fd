"""Bad input catalog, third part (issue 22): labels and file names that are text to matplotlib
and Rich, runs that race for one folder, metadata that lies. One test per bug; each asserts what
a user sees (exit code, the one-line message, the files written)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.errors import OutputError
from helpers import one_line_error, tiny_onnx, tone, write_wav

runner = CliRunner()
SR = 8000
TINY_AUDIO = ("data: {synthetic: {per_class: 4, seconds: 0.25}, val_fraction: 0, test_fraction: 0}\n"
              "model: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n")  # fmt: skip


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
    from attn.pipelines.infer import plots

    fig = plots.confusion_figure([[1, 0], [0, 1]], ["$\\frac{1}{2}$", "b"])
    plots.png_bytes(fig)
    ticks = fig.axes[0].get_xticklabels()
    assert ticks[0].get_text() == "$\\frac{1}{2}$" and not any(t.get_parse_math() for t in ticks)


# -- 2 and 12. an exported ONNX file only predicts -----------------------------------------------


def test_explain_with_an_onnx_file_refuses_like_evaluate(onnx_meta, tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", onnx_meta)
    clip = write_wav(tmp_path / "clip.wav", tone(440, 0.5, SR), SR)
    r = runner.invoke(app, ["predict", "-m", str(model), str(clip)])
    assert r.exit_code == 0 and json.loads(r.stdout)["label"] in json.loads(onnx_meta["labels"]), r.output
    r = runner.invoke(app, ["explain", "-m", str(model), str(clip)])
    one_line_error(r, 2, str(model), "attn explain needs the .attn model (an exported ONNX file only predicts)")


def test_features_and_tokenize_with_an_onnx_file_say_what_evaluate_says(onnx_meta, tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", onnx_meta)
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
from attn.pipelines.data.sources import Item, collect_labels
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
    from attn.pipelines.store import rundir

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
    import socket

    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_AUDIO)
    out = tmp_path / "same"
    out.mkdir()
    (out / "train.log").write_text("the first run's log\n")
    live = subprocess.Popen(["sleep", "60"])
    try:
        (out / ".attn-run.lock").write_text(f"{live.pid} {socket.gethostname()}\n")  # a live process
        r = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
        one_line_error(r, 3, f"--out {out}: cannot write (another run, process {live.pid}, is writing into it; "
                             f"if that run is gone, remove {out / '.attn-run.lock'})")  # fmt: skip
    finally:
        live.kill()
        live.wait()
    (out / ".attn-run.lock").write_text(f"{live.pid} {socket.gethostname()}\n")  # a killed run's
    r = runner.invoke(app, ["train", str(recipe), "--out", str(out)])
    one_line_error(r, 2, "directory exists and is not empty, and holds nothing to resume (no checkpoint or model)")
    assert (out / "train.log").read_text() == "the first run's log\n"
    (out / "last.ckpt").write_bytes(b"")
    one_line_error(runner.invoke(app, ["train", str(recipe), "--out", str(out)]), 2,
                   "directory exists and is not empty (use --resume")  # fmt: skip


def test_a_lock_left_by_a_killed_run_never_blocks_its_folder(tmp_path, monkeypatch):
    """What a lock names decides whether a run holds the folder: a pid now used by another
    process (attn is pid 1 again in a restarted container), or an empty lock a failed write left
    behind (a full disk) hold nothing; a live run, another host's run and a lock being written
    this instant do."""
    import os
    import socket
    import time

    from attn.pipelines.store import rundir

    lock = tmp_path / ".attn-run.lock"
    host = socket.gethostname()
    lock.write_text(f"{os.getpid()} {host} {rundir._started(os.getpid()) + 1}\n")  # an earlier pid 1
    assert rundir.lock_holder(tmp_path) is None
    live = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(f"{live.pid} {host} {rundir._started(live.pid)}\n")
        assert rundir.lock_holder(tmp_path) == (live.pid, host)
        lock.write_text(f"{live.pid} {host} {rundir._started(live.pid) - 1}\n")  # the pid was reused since
        assert rundir.lock_holder(tmp_path) is None
    finally:
        live.kill()
        live.wait()
    lock.write_text(f"{os.getpid()} elsewhere 0\n")
    assert rundir.lock_holder(tmp_path) == (os.getpid(), "elsewhere")
    lock.write_text("")
    assert rundir.lock_holder(tmp_path) == (-1, "")
    old = time.time() - 60
    os.utime(lock, (old, old))
    assert rundir.lock_holder(tmp_path) is None
    rundir.claim(tmp_path, "--out x")  # taken over
    assert lock.read_text().split()[0] == str(os.getpid())
    rundir.release(tmp_path)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    (tmp_path / ".last.ckpt.k3x9.tmp").write_bytes(b"half a checkpoint")  # a write a kill cut short
    (tmp_path / "last.ckpt").write_bytes(b"the checkpoint")
    assert rundir.drop_torn_writes(tmp_path) == 1 and (tmp_path / "last.ckpt").exists()

    monkeypatch.setattr(rundir.os, "fdopen", full_disk)
    with pytest.raises(OutputError, match=r"^--out x: cannot write \(No space left on device\)$"):
        rundir.claim(tmp_path, "--out x")
    assert not lock.exists()


def _three_epochs(tmp_path):
    """(recipe, run folder, result) of a tiny three-epoch training into tmp_path/run."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_AUDIO.replace("epochs: 1", "epochs: 3, patience: 0"))
    out = tmp_path / "run"
    return recipe, out, runner.invoke(app, ["train", str(recipe), "--out", str(out), "--threads", "1", "--quiet"])


def test_a_full_disk_mid_run_says_which_epoch_is_saved_and_how_to_resume(tmp_path, monkeypatch):
    """The checkpoint that could not be written leaves the previous one whole; the error says so
    and names the command that goes on once there is space (as Ctrl-C's message does)."""
    from attn.pipelines.store.checkpoint import CheckpointWriter

    write = CheckpointWriter.write
    calls = []

    def fills_up(self, epoch, state):
        calls.append(epoch)
        if len(calls) > 1:
            raise OutputError(f"{self.path}: cannot write (No space left on device)")
        return write(self, epoch, state)

    monkeypatch.setattr(CheckpointWriter, "write", fills_up)
    recipe, out, r = _three_epochs(tmp_path)
    one_line_error(r, 3, f"{out / 'last.ckpt'}: cannot write (No space left on device); state after epoch 1 is "
                         f"saved: once it can be written, resume with: attn train --resume {out}")  # fmt: skip


def test_a_full_disk_at_the_first_checkpoint_leaves_no_folder_that_blocks_the_next_run(tmp_path, monkeypatch):
    """Epoch 1's model.attn was written but its checkpoint was not: --resume took the folder for a
    finished run and a new run refused the non-empty --out, sending the user in a circle."""
    from attn.pipelines.store.checkpoint import CheckpointWriter

    def full(self, epoch, state):
        raise OutputError(f"{self.path}: cannot write (No space left on device)")

    monkeypatch.setattr(CheckpointWriter, "write", full)
    recipe, out, r = _three_epochs(tmp_path)
    one_line_error(r, 3, f"{out / 'last.ckpt'}: cannot write (No space left on device)")
    assert not out.exists()
    monkeypatch.undo()
    assert runner.invoke(app, ["train", str(recipe), "--out", str(out), "--threads", "1", "--quiet"]).exit_code == 0


def test_a_run_whose_folder_is_removed_stops_instead_of_making_it_again(tmp_path, monkeypatch):
    """`rm -rf RUN` while it trains: the run stops at its next save with a message, rather than
    silently writing a new folder without its recipe, log or lock (that another run could share)."""
    import shutil

    from attn.pipelines.train import epoch_saver as model  # EpochSaver appends the history lines

    append = model.append_line

    def removed_after_epoch_1(path, line):
        append(path, line)
        shutil.rmtree(path.parent)

    monkeypatch.setattr(model, "append_line", removed_after_epoch_1)
    recipe, out, r = _three_epochs(tmp_path)
    one_line_error(r, 3, f"{out}: the run folder was removed or moved while training (after epoch 2); stopped")
    assert not out.exists()


def test_a_class_named_unknown_is_warned_about(tmp_path):
    """Abstention answers `unknown` too: a user should hear of the clash before reading records."""
    for label, freq in (("unknown", 300), ("tone", 900)):
        for i in range(4):
            write_wav(tmp_path / "d" / label / f"{i}.wav", tone(freq + 10 * i, 0.25, 8000), 8000)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{root: {tmp_path / 'd'}}}\nfeatures: {{sample_rate: 8000, frame_seconds: 0.25, "
                      "hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 16}\nmodel: {name: cnn, channels: [4]}"
                      "\ntrain: {epochs: 1}\n")  # fmt: skip
    r = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "a class is named 'unknown', which is also what predict answers when it abstains" in r.output


def test_auto_features_on_unreadable_training_files_name_one_and_why(tmp_path):
    """Windows paths in a manifest, a leftover data.root: the auto probe said only that nothing
    could be read (exit 2); it names the first file as resolved and the reason (exit 1, data)."""
    (tmp_path / "m.csv").write_text("path,label\nclips\\c0.wav,a\nclips\\c1.wav,b\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{manifest: {tmp_path / 'm.csv'}, val_fraction: 0, test_fraction: 0}}\n"
                      "features: {sample_rate: auto}\n"
                      "model: {name: cnn, channels: [4]}\n")  # fmt: skip
    r = runner.invoke(app, ["train", str(recipe), "--threads", "1", "--quiet"])
    one_line_error(r, 1, "data: none of the 2 training files probed for the auto features could be read (first: "
                         f"{tmp_path / 'clips'}\\c0.wav: file not found)")  # fmt: skip


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
    (
        "thresholds fewer than the labels",  # was 'internal error: IndexError' at the first prediction
        lambda m: {**m, "data": json.dumps({"multi_label": True}), "thresholds": json.dumps([0.5, 0.5])},
        {},
        "thresholds must be 3 numbers within [0, 1], one per label",
    ),
]


@pytest.mark.parametrize("name, lie, graph, says", LIES, ids=[c[0] for c in LIES])
def test_onnx_metadata_that_lies_is_damaged_metadata(name, lie, graph, says, onnx_meta, tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", lie(onnx_meta), **graph)
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
    from attn.pipelines.recipe.load import parse_yaml

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
    from attn.pipelines.recipe.load import load_recipe

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
    from attn.pipelines.recipe.load import load_recipe

    assert load_recipe(tmp_path / "r1450.yaml").model.name == "cnn"  # a chain of 50 still loads


def test_tensorboard_draws_mathtext_labels_literally(tmp_path):
    pytest.importorskip("tensorboard")
    from attn.pipelines.recipe.load import resolve_recipe
    from attn.pipelines.train.tensorboard import TensorBoardCallback

    tb = TensorBoardCallback(tmp_path / "tb", resolve_recipe({"data": {"synthetic": {"per_class": 4}}}), tmp_path)
    tb.on_epoch_end({"epoch": 1, "train_loss": 1.0})
    metrics = {"split": "test", "accuracy": 0.5, "macro_f1": 0.5, "labels": ["$\\undefinedcmd{x}$", "b"],
               "confusion": [[1, 1], [1, 1]]}  # fmt: skip
    tb.on_train_end(metrics)  # draws the confusion matrix image
    assert any((tmp_path / "tb").iterdir())


def test_long_file_names_write_or_say_they_are_too_long(tmp_path):
    """A legal 250-character output name was refused (the temporary file's name went past 255);
    a 260-character --out was 'internal error: OSError'."""
    from attn.pipelines.fsutil import atomic_write_bytes

    name = tmp_path / ("z" * 250 + ".pt")
    atomic_write_bytes(name, b"x")
    assert name.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [name.name]
    long = tmp_path / ("y" * 260)
    r = runner.invoke(app, ["train", "quickstart.yaml", "--out", str(long), "--threads", "1", "--quiet"])
    one_line_error(r, 2, f"{long}: file name too long")
