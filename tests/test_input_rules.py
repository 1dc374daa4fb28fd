"""The second bad-input catalog: recipes, run directories, text and audio inputs as a new user
gives them. Each case has one documented behaviour (docs/errors.md), checked through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from attn.cli.app import app
from helpers import tone, write_wav

runner = CliRunner()
SR = 8000
REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SMALL = ["--set", "data.synthetic.per_class=4", "--set", "train.epochs=1"]  # were the check missing, a short run


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def one_line_error(r, code: int) -> str:
    assert r.exit_code == code, r.output
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "Traceback" not in r.output, err
    return err


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    from test_text import _text_data

    d = tmp_path_factory.mktemp("text")
    p = _text_data(d)
    r = run("train", p, "--out", d / "run", "--quiet", "--set", "train.epochs=4")
    assert r.exit_code == 0, r.output
    return d / "run"


# -- the run directory ------------------------------------------------------------------------


def test_out_outside_runs_points_runs_latest_at_the_new_run(tmp_path, tiny_recipe, monkeypatch):
    """`--out myrun` makes runs/latest (not ./latest) point at myrun, so the next
    `attn predict` uses the model just trained, as `train --help` says."""
    monkeypatch.chdir(tmp_path)
    p = tiny_recipe(epochs=1)
    assert run("train", p, "--quiet").exit_code == 0
    first = (tmp_path / "runs" / "latest").resolve()
    assert first.parent == tmp_path / "runs" and not os.path.isabs(os.readlink(tmp_path / "runs" / "latest"))
    assert run("train", p, "--quiet", "--out", "myrun").exit_code == 0
    assert not os.path.lexists(tmp_path / "latest")
    latest = tmp_path / "runs" / "latest"
    assert latest.resolve() == (tmp_path / "myrun").resolve() != first
    assert os.path.isabs(os.readlink(latest))  # outside runs/: an absolute link, true from anywhere
    info = json.loads(run("info", "--format", "json").stdout)
    assert os.path.samefile(info["path"], tmp_path / "myrun" / "model.attn")
    assert "runs/latest" in run("train", "--help").stdout


def test_a_run_that_fails_before_its_first_epoch_leaves_no_run_directory(tmp_path, monkeypatch):
    """Nothing to resume, so nothing is left: the same --out works again once the data is fixed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("path,label\ngone1.wav,a\ngone2.wav,b\n")
    p = tmp_path / "r.yaml"
    p.write_text("data: {manifest: m.csv, val_fraction: 0, test_fraction: 0}\nfeatures: {sample_rate: 8000}\n"
                 "model: {name: cnn, channels: [4]}\ntrain: {epochs: 1}\n")  # fmt: skip
    r = run("train", p, "--out", "run")
    assert r.exit_code == 1 and "no training example could be loaded" in r.stderr
    assert not (tmp_path / "run").exists()
    r = run("train", p)
    assert r.exit_code == 1 and list((tmp_path / "runs").iterdir()) == []


# -- recipes -----------------------------------------------------------------------------------


def test_synthetic_and_root_together_is_a_recipe_error(tmp_path):
    r = run("train", QUICKSTART, *SMALL, "--set", f"data.root={tmp_path}", "--out", tmp_path / "run")
    err = one_line_error(r, 2)
    assert "data: give one data source, not synthetic and root" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rate", [1, 800])
def test_synthetic_data_below_880_hz_is_a_recipe_error(rate, tmp_path):
    r = run("train", QUICKSTART, *SMALL, "--set", f"features.sample_rate={rate}", "--out", tmp_path / "run")
    err = one_line_error(r, 2)
    assert "features.sample_rate" in err and "data.synthetic" in err and "880" in err
    assert not (tmp_path / "run").exists()


def test_duplicate_recipe_keys_are_an_error_with_both_lines(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data: {synthetic: {per_class: 4}}\ntrain:\n  epochs: 1\n  lr: 0.01\n  epochs: 2\n")
    err = one_line_error(run("train", p, "--out", tmp_path / "run"), 2)
    assert f"{p}:5: duplicate key 'train.epochs' (first on line 3)" in err
    p.write_text("data: {synthetic: {per_class: 4}}\ntrain: {epochs: 1}\ndata: {root: x}\n")
    err = one_line_error(run("train", p, "--out", tmp_path / "run"), 2)
    assert f"{p}:3: duplicate key 'data' (first on line 1)" in err and not (tmp_path / "run").exists()


def test_hop_longer_than_frame_is_an_error_saying_how_much_is_never_seen(tmp_path):
    from attn.pipelines.recipe.load import load_recipe, recipe_from_dict, recipe_to_dict

    r = run("train", QUICKSTART, *SMALL, "--set", "features.frame_seconds=6", "--set", "features.hop_seconds=36",
            "--out", tmp_path / "run")  # fmt: skip
    err = one_line_error(r, 2)
    assert "features: hop_seconds (36) is longer than frame_seconds (6)" in err
    assert "30 s of every 36 s (83%)" in err and "never seen" in err
    # A model trained before this check still loads: the rule is for new recipes only.
    stored = recipe_to_dict(load_recipe(QUICKSTART))
    stored["features"].update(frame_seconds=6.0, hop_seconds=36.0)
    assert recipe_from_dict(stored).features.hop_seconds == 36.0


def test_too_many_mels_for_n_fft_is_an_error_naming_both_keys(tmp_path):
    r = run("train", QUICKSTART, *SMALL, "--set", "features.n_fft=256", "--set", "features.n_mels=128",
            "--out", tmp_path / "run")  # fmt: skip
    err = one_line_error(r, 2)
    assert "features: n_mels (128) is too many for n_fft (256)" in err and "empty" in err
    assert "at most" in err


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_empty_mel_filter_count_agrees_with_torchaudio(scale):
    """The recipe check predicts exactly the filters torchaudio builds empty."""
    import torchaudio

    from attn.features.config import empty_mel_filters

    for sr, n_fft, n_mels, f_min, f_max in [
        (16000, 512, 64, 0.0, None), (16000, 512, 128, 0.0, None), (16000, 256, 128, 0.0, None),
        (8000, 256, 24, 0.0, None), (8000, 256, 80, 0.0, None), (22050, 1024, 128, 0.0, None),
        (22050, 512, 256, 20.0, 8000.0), (8000, 64, 40, 0.0, None), (44100, 2048, 128, 30.0, 16000.0),
        (16000, 400, 80, 60.0, 7600.0), (16000, 512, 40, 300.0, 400.0),
    ]:  # fmt: skip
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, f_min, f_max or sr / 2, n_mels, sr, "slaney",
                                                   scale)  # fmt: skip
        want = int((fb.max(dim=0).values == 0).sum())
        assert empty_mel_filters(sr, n_fft, n_mels, f_min, f_max, scale) == want, (sr, n_fft, n_mels, f_min, f_max)


# -- audio inputs ------------------------------------------------------------------------------


def test_files_much_shorter_than_a_window_carry_a_warning(trained_model, tmp_path):
    """Predicted, but the record says the prediction rests mostly on padding; the summary counts them."""
    one = tmp_path / "one_sample.wav"
    sf.write(str(one), np.array([0.1], dtype=np.float32), SR)
    slow = tmp_path / "one_hz.wav"
    sf.write(str(slow), np.array([0.1, -0.1, 0.1], dtype=np.float32), 1)
    good = write_wav(tmp_path / "good.wav", tone(440, 0.5, SR), SR)
    r = run("predict", "-m", trained_model, one, slow, good)
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 0 and all("label" in x for x in recs)
    assert "0.000125 s of audio" in recs[0]["warning"] and "0.5 s window" in recs[0]["warning"]
    assert recs[0]["duration"] == 0.000125  # it was rounded to 0.0 while the warning said 0.000125 s
    assert "1 Hz" in recs[1]["warning"] and "8000 Hz" in recs[1]["warning"]
    assert "warning" not in recs[2]
    # under half the model's rate (the warning came only under a tenth), and the rate itself is fine
    low, same_half = tmp_path / "3k.wav", tmp_path / "4k.wav"
    sf.write(str(low), tone(440, 0.5, 3000), 3000)
    sf.write(str(same_half), tone(440, 0.5, 4000), 4000)
    low_rec, half_rec = map(json.loads, run("predict", "-m", trained_model, low, same_half).stdout.splitlines())
    assert low_rec["warning"].startswith("recorded at 3000 Hz, under half the model's 8000 Hz: it holds nothing "
                                         "above 1500 Hz")  # fmt: skip
    assert "warning" not in half_rec
    assert "attn: 2 of 3 input(s) have a warning" in r.stderr
    csv = run("predict", "-m", trained_model, one, good, "--format", "csv").stdout.splitlines()
    assert csv[0].endswith(",warning") and "0.000125 s" in csv[1] and csv[2].endswith(",")
    silent = write_wav(tmp_path / "silent.wav", np.zeros(2 * SR, np.float32), SR)  # a label, but of nothing
    rec = json.loads(run("predict", "-m", trained_model, silent, "--format", "jsonl").stdout)
    assert rec["label"] and rec["warning"].startswith("silent: no sample reaches one 16-bit step")
    # the same for a constant offset (the model removes it) and channels that cancel in the mono mix
    dc = write_wav(tmp_path / "dc.wav", np.full(2 * SR, 0.25, np.float32), SR)
    x = tone(440, 1.0, SR)
    opposite = write_wav(tmp_path / "opposite.wav", np.stack([x, -x], 1), SR)
    for rec in map(
        json.loads, run("predict", "-m", trained_model, dc, opposite, "--format", "jsonl").stdout.splitlines()
    ):
        assert rec["warning"].startswith("silent: no sample reaches one 16-bit step (1/32768) once mixed to mono"), rec


def test_a_broken_symlink_in_a_folder_is_an_error_record(trained_model, tmp_path):
    from attn.pipelines.data.sources import scan_folder

    d = tmp_path / "clips"
    write_wav(d / "a" / "good.wav", tone(440, 0.5, SR), SR)
    (d / "a" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    r = run("predict", "-m", trained_model, d)
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and [Path(x["input"]).name for x in recs] == ["gone.wav", "good.wav"]
    assert recs[0]["error"] == f"{d / 'a' / 'gone.wav'}: broken symbolic link (to {tmp_path / 'nowhere.wav'})"
    # Training lists it too, so it is reported and counted as skipped like any unreadable file.
    assert [Path(it.source).name for it in scan_folder(str(d), (".wav",))] == ["gone.wav", "good.wav"]


def test_background_noise_warns_about_a_broken_symlink_and_uses_the_rest(tmp_path, caplog):
    """train.augment.background walks its folder like training and predict do: the broken link is
    named in a warning (it used to vanish silently) and the readable file still gives segments."""
    from attn.pipelines.data.clips import load_background

    d = tmp_path / "noise"
    write_wav(d / "hum.WAV", tone(50, 1.0, SR), SR)
    (d / "sub").mkdir()
    (d / "sub" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    with caplog.at_level("WARNING", logger="attn"):
        segments = load_background(str(d), (".wav",), SR, SR // 2)
    assert segments.shape == (2, SR // 2)
    assert any("gone.wav" in r.getMessage() and "background skipped" in r.getMessage() for r in caplog.records)


def test_features_of_a_text_model_point_at_tokenize(text_model, tmp_path):
    wav = write_wav(tmp_path / "x.wav", tone(440, 0.5, SR), SR)
    err = one_line_error(run("features", wav, "-m", text_model, "--out", tmp_path / "x.npy"), 2)
    assert "text model" in err and "no audio features" in err and "attn tokenize" in err
    from test_text import _text_data

    recipe = _text_data(tmp_path)
    err = one_line_error(run("features", wav, "--recipe", recipe, "--out", tmp_path / "x.npy"), 2)
    assert "text recipe" in err and "attn tokenize" in err
    assert not (tmp_path / "x.npy").exists()


# -- text inputs -------------------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def test_a_bom_at_the_start_of_a_text_file_is_not_text(text_model, tmp_path):
    f = tmp_path / "q.txt"
    f.write_bytes(BOM + b"Who invented the radio ?\nWhere is the tower ?\n")
    recs = [json.loads(x) for x in run("predict", "-m", text_model, f).stdout.splitlines()]
    plain = json.loads(run("predict", "-m", text_model, "--text", "Who invented the radio ?").stdout)
    assert recs[0]["text"] == "Who invented the radio ?" and recs[0]["tokens"] == plain["tokens"]
    assert {k: v for k, v in recs[0].items() if k not in ("input", "text")} == {
        k: v for k, v in plain.items() if k != "input"}  # fmt: skip
    r = run("predict", "-m", text_model, "-", input=BOM + b"Who invented the radio ?\n")
    assert json.loads(r.stdout)["tokens"] == plain["tokens"]
    want = run("tokenize", "-m", text_model, "Who invented the radio ?").stdout
    assert run("tokenize", "-m", text_model, "-", input=BOM + b"Who invented the radio ?\n").stdout == want
    # empty stdin: tokenize said nothing, exit 0, where predict, embed and explain say so, exit 2
    for cmd in ("tokenize", "predict"):
        r = run(cmd, "-m", text_model, "-", input=b"")
        assert r.exit_code == 2 and "no inputs (stdin was empty)" in r.output, (cmd, r.output)


LINES = b"Who owns the radio ?\n\xff\xfe broken\n\nWhere is the castle ?\n"


def test_one_rule_for_bad_lines_in_files_and_on_stdin_for_predict_and_tokenize(text_model, tmp_path):
    """A line that is blank or not valid UTF-8 is an input that failed, named by where it came
    from: an error record (predict) or an empty output line and a stderr line (tokenize); the
    other lines are still done, and the exit code is 1."""
    f = tmp_path / "q.txt"
    f.write_bytes(LINES)
    for source, where, stdin in ((str(f), str(f), None), ("-", "<stdin>", LINES)):
        r = run("predict", "-m", text_model, source, input=stdin)
        recs = [json.loads(x) for x in r.stdout.splitlines()]
        assert r.exit_code == 1 and len(recs) == 4 and "label" in recs[0] and "label" in recs[3]
        assert recs[1] == {"input": f"{where}:2", "error": f"{where}:2: not valid UTF-8 (byte 0xff)"}
        assert recs[2]["input"] == f"{where}:3" and recs[2]["error"] == f"{where}:3: empty text"
        assert "2 of 4 input(s) failed" in r.stderr
    utf16 = "Who is it ?\n".encode("utf-16")  # with its byte order mark: was read as NUL-laden garbage
    r = run("predict", "-m", text_model, "-", input=utf16)
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].startswith("<stdin>: UTF-16 text; a text model reads")
    r = run("tokenize", "-m", text_model, "-", input=LINES)
    out = r.stdout.split("\n")
    assert r.exit_code == 1 and len(out) == 5 and out[1] == out[2] == "" and out[0].startswith("<cls> who")
    assert "error: <stdin>:2: not valid UTF-8 (byte 0xff)" in r.stderr
    assert "error: <stdin>:3: empty text" in r.stderr and "2 of 4 input(s) failed" in r.stderr
    r = run("tokenize", "-m", text_model, "Who ?", "  ")
    assert r.exit_code == 1 and r.stdout.split("\n")[1] == "" and "error: text 2: empty text" in r.stderr
    r = run("predict", "-m", text_model, "--text", "Who ?", "--text", "  ")
    assert r.exit_code == 1 and json.loads(r.stdout.splitlines()[1])["error"] == "text 2: empty text"


# -- seeds and what `-` reads --------------------------------------------------------------------


def test_a_negative_seed_is_a_usage_error(tmp_path):
    r = run("train", QUICKSTART, "--seed", "-5", *SMALL, "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--seed" in r.output and not (tmp_path / "a").exists()
    err = one_line_error(run("train", QUICKSTART, "--set", "train.seed=-3", *SMALL, "--out", tmp_path / "b"), 2)
    assert "train.seed: Input should be greater than or equal to 0" in err


def test_audio_bytes_on_stdin_say_what_dash_reads(trained_model, tmp_path):
    """`cat x.wav | attn predict -` (as `attn listen` takes it): `-` reads paths, so one clear
    usage error, not an internal one about a NUL byte in a path."""
    wav = write_wav(tmp_path / "x.wav", tone(440, 0.5, SR), SR).read_bytes()
    err = one_line_error(run("predict", "-m", trained_model, "-", input=wav), 2)
    assert "stdin holds binary data (audio?), not paths" in err and "attn listen" in err
    paths = f"{tmp_path / 'x.wav'}\0{tmp_path / 'x.wav'}\0"  # find -print0
    err = one_line_error(run("predict", "-m", trained_model, "-", input=paths), 2)
    assert "NUL-separated paths (find -print0?)" in err
    r = run("predict", "-m", trained_model, "-", "--format", "jsonl", input=f"\ufeff{tmp_path / 'x.wav'}\r\n")
    assert r.exit_code == 0 and json.loads(r.stdout)["input"] == str(tmp_path / "x.wav")  # a BOM is no path's


def test_a_text_model_with_nothing_to_read_says_where_it_looked(text_model, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    err = one_line_error(run("predict", "-m", text_model, tmp_path / "empty.txt"), 2)
    assert err == f"error: no inputs ({tmp_path / 'empty.txt'}: no text in it)"
    assert one_line_error(run("predict", "-m", text_model, "-", input=""), 2) == "error: no inputs (stdin was empty)"
    r = run("predict", "-m", text_model, "what a great film", "--format", "jsonl")  # a text where a file goes
    assert r.exit_code == 1 and json.loads(r.stdout)["error"].endswith("; to classify it as a text: --text")


def test_export_refuses_a_file_name_of_the_other_format(trained_model, tmp_path):
    """attn (and its users) tell an export's format by its extension: x.pt holding ONNX was refused
    by attn itself afterwards as 'unknown format'."""
    for args, words in ((["--out", tmp_path / "x.pt"], "an ONNX file's name ends in .onnx"),
                        (["-f", "torchscript", "--out", tmp_path / "x.onnx"], "would be taken for ONNX: use .pt"),
                        (["--out", tmp_path / "x.attn"], ".attn is attn's own model format")):  # fmt: skip
        assert words in one_line_error(run("export", "-m", trained_model, *args), 2)
    assert not list(tmp_path.iterdir())


def test_runs_latest_pointing_at_a_moved_run_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(tmp_path / "moved-away")
    err = one_line_error(run("info"), 2)
    assert f"runs/latest points to {tmp_path / 'moved-away'}, which no longer exists" in err
    err = one_line_error(run("report"), 2)  # said "no such run directory (no run has finished here yet)"
    assert f"runs/latest points to {tmp_path / 'moved-away'}, which no longer exists" in err


def test_an_out_under_a_file_names_the_file(trained_model, tmp_path):
    """`--out afile/x.npy` with `afile` a file said "cannot write (File exists)" (sweep AH)."""
    (tmp_path / "afile").write_text("mine")
    wav = write_wav(tmp_path / "a.wav", tone(440, 0.5, 16000), 16000)
    err = one_line_error(run("embed", "-m", trained_model, wav, "--out", tmp_path / "afile" / "x.npy"), 3)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err
    r = run("embed", "-q", "-m", trained_model, wav, "--out", tmp_path / "x.npy")
    assert r.exit_code == 0 and not r.stderr  # -q: no "attn: wrote ..." line


def test_two_data_sources_say_how_to_drop_one(tmp_path):
    err = one_line_error(run("train", QUICKSTART, "--set", f"data.root={tmp_path}", "--out", tmp_path / "r"), 2)
    assert "give one data source, not synthetic and root" in err and "--set data.root=null" in err


def test_a_csv_or_jsonl_given_to_a_text_model_is_read_by_its_text_column(text_model, tmp_path):
    """As training and `attn evaluate` read it: the header line was predicted as a text, and each
    row with its quotes and label. A one-column .csv without the column is still lines; a table of
    other columns is an error record."""
    (tmp_path / "t.csv").write_text('text,label\n"who built it , then ?",HUM\n,LOC\nwhere is it ?,LOC\n')
    (tmp_path / "t.jsonl").write_text('{"text": "who built it ?", "label": "HUM"}\n')
    (tmp_path / "plain.csv").write_text("who built it ?\nwhere is it ?\n")
    r = run("predict", "-m", text_model, tmp_path / "t.csv", tmp_path / "t.jsonl", tmp_path / "plain.csv",
            "--format", "jsonl")  # fmt: skip
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["input"].split("/")[-1], x.get("text")) for x in recs] == [
        ("t.csv:2", "who built it , then ?"), ("t.csv:3", None), ("t.csv:4", "where is it ?"),
        ("t.jsonl:1", "who built it ?"), ("plain.csv:1", "who built it ?"),
        ("plain.csv:2", "where is it ?")]  # fmt: skip
    assert recs[1]["error"].endswith("t.csv:3: empty text") and r.exit_code == 1
    # A table with other columns is not lines: the label was read as part of the text, and predicted.
    (tmp_path / "other.tsv").write_text("question\tlabel\nWho?\tHUM\n")
    r = run("predict", "-m", text_model, tmp_path / "other.tsv", "--format", "jsonl")
    (rec,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1
    assert "a table without the model's text column 'text' (columns: question, label)" in rec["error"]


def test_options_predict_would_ignore_are_refused(trained_model, text_model, tmp_path):
    """--events on a text model did a plain prediction; --top-k and --min-score with --events did nothing."""
    assert "--events is for audio models; this is a text model" in one_line_error(
        run("predict", "-m", text_model, "--text", "hi", "--events"), 2)  # fmt: skip
    wav = write_wav(tmp_path / "x.wav", tone(440, 1.0, SR), SR)
    err = one_line_error(run("predict", "-m", trained_model, wav, "--events", "--top-k", "2", "--min-score", "0.5"), 2)
    assert "--top-k, --min-score: for a label per file, not --events" in err


def test_a_text_argument_that_is_not_utf8_names_the_byte_as_a_files_line_does():
    from attn.pipelines.infer.predict_text import given_text

    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python hands over such an argument
    assert given_text(bad, "text 1").error == "text 1: not valid UTF-8 (byte 0xe9)"


def test_evaluate_reads_data_with_other_column_names_by_set(text_model, tmp_path):
    """The error said 'set data.text_column / data.label_column', and --set then said it needs
    --recipe: without one it now changes the model's stored recipe."""
    test = (text_model.parent / "test.csv").read_text().splitlines()
    (tmp_path / "t.csv").write_text("\n".join(["Question,Kind"] + test[1:]) + "\n")
    err = one_line_error(run("evaluate", "-m", text_model, tmp_path / "t.csv"), 2)
    assert "column 'text' not found (columns: Question, Kind); set data.text_column" in err
    r = run("evaluate", "-m", text_model, tmp_path / "t.csv", "-f", "json",
            "--set", "data.text_column=Question", "--set", "data.label_column=Kind")  # fmt: skip
    assert r.exit_code == 0, r.output
    same = json.loads(run("evaluate", "-m", text_model, text_model.parent / "test.csv", "-f", "json").stdout)
    assert json.loads(r.stdout)["accuracy"] == same["accuracy"] and same["count"] == len(test) - 1


@pytest.mark.parametrize("cmd", [["predict", "-"], ["embed", "-"], ["listen"]])
def test_audio_commands_started_with_stdin_closed_say_so(trained_model, cmd):
    """`attn predict - <&-` was 'internal error: TypeError', listen 'OSError: Bad file descriptor'."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "attn", cmd[0], "-m", str(trained_model), *cmd[1:]],
                       capture_output=True, text=True, stdin=None, preexec_fn=lambda: os.close(0))  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: -: stdin is closed;"), r.stderr


def test_a_file_of_the_users_at_runs_latest_is_left_as_it_is(tmp_path, monkeypatch, caplog):
    """It was replaced by attn's link without a word."""
    from attn.pipelines.store.rundir import point_latest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").write_text("my notes")
    (tmp_path / "run1").mkdir()
    with caplog.at_level("WARNING", logger="attn"):
        point_latest(tmp_path / "run1")
    assert (tmp_path / "runs" / "latest").read_text() == "my notes"
    assert "runs/latest is not attn's link (a file of yours): left as it is" in caplog.text


def test_evaluate_events_refuses_set_rather_than_ignore_it(trained_model, tmp_path):
    err = one_line_error(
        run("evaluate", "-m", trained_model, "--events", tmp_path / "e.csv", "--set", "data.root=x"), 2
    )
    assert "--set is for DATA or --recipe; --events takes its recordings from the annotations" in err


def test_evaluate_on_a_shipped_recipe_with_only_its_test_file_set(text_model):
    """`--recipe text.yaml --set data.test=t.csv` was refused for the recipe's placeholder train
    file, which scoring never reads."""
    test = text_model.parent / "test.csv"
    r = run("evaluate", "-m", text_model, "--recipe", "text.yaml", "--set", f"data.test={test}", "-f", "json")
    assert r.exit_code == 0, r.output
    same = json.loads(run("evaluate", "-m", text_model, test, "-f", "json").stdout)
    assert json.loads(r.stdout)["accuracy"] == same["accuracy"]


def test_samples_over_a_million_times_full_scale_are_an_error_record(trained_model, tmp_path):
    """One sample of 1e20 in a float WAV gave "score": NaN (a bare NaN: invalid JSON) with a label;
    1e10 a confident wrong label. Such a file is refused like one holding NaN; loud is not broken."""
    x = tone(440, 0.5, SR)
    broken, loud = x.copy(), x * 1000
    broken[100] = 1e20
    sf.write(str(tmp_path / "broken.wav"), broken, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "loud.wav"), loud, SR, subtype="FLOAT")
    r = run("predict", "-m", trained_model, tmp_path / "broken.wav", tmp_path / "loud.wav", "--format", "jsonl")
    bad, ok = (json.loads(line, parse_constant=lambda c: pytest.fail(c)) for line in r.stdout.splitlines())
    assert r.exit_code == 1 and "label" in ok
    assert bad["error"] == (f"{tmp_path / 'broken.wav'}: holds samples of 1e+20, over a million times full scale "
                            "(1): not audio as recorded (a float file with broken values?)")  # fmt: skip
