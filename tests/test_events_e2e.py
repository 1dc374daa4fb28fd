"""Sound events end to end: a generated recording with sounds at known times, the collar
convention against sed_eval, bad annotation rows, the CLI's formats and `attn info`."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from attn.cli.app import app
from attn.errors import InputError
from attn.pipelines.data.annotations import Annotated, Annotation, load_annotated
from attn.pipelines.data.synthetic import generate_clip
from attn.pipelines.infer.events import Event
from attn.pipelines.infer.events_predict import event_metrics

# sed_eval comes with the events extra (pip install 'attn[events]'; CI installs it)
pytest.importorskip("sed_eval")

SR = 8000
# (label, onset, offset) of the sounds placed in the generated recording
PLACED = [("sine", 1.0, 1.5), ("chirp", 3.0, 3.5), ("sine", 5.2, 5.7)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """7 s of quiet noise (-60 dBFS) with the tiny model's classes at known times, and its annotations."""
    d = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(7 * SR) * 10 ** (-60 / 20)
    for i, (label, on, off) in enumerate(PLACED):
        clip = generate_clip(label, np.random.default_rng(100 + i), off - on, SR)
        clip = clip / np.abs(clip).max() * 0.3
        x[int(on * SR) : int(on * SR) + clip.size] += clip
    sf.write(d / "scene.wav", x.astype(np.float32), SR)
    (d / "events.csv").write_text(
        "file,onset,offset,label\n" + "".join(f"scene.wav,{a},{b},{c}\n" for c, a, b in PLACED)
    )
    return d


def test_sounds_at_known_times_are_found_with_their_labels(trained_model, scene):
    import attn

    m = attn.load(trained_model)
    events = list(m.events_iter(scene / "scene.wav", classify="segments", gate_db=10.0, min_duration=0.1))
    assert [e["label"] for e in events] == [label for label, _, _ in PLACED]
    for e, (_, on, off) in zip(events, PLACED, strict=True):
        assert abs(e["start"] - on) <= 0.1 and abs(e["end"] - off) <= 0.1, e
    # a recording chain's DC offset is no sound: with 0.15 added, every row sat 20 dB above the
    # -60 dBFS floor (the offset's own level), the floor rose with it and the gate found nothing
    x, _ = sf.read(scene / "scene.wav", dtype="float32")
    sf.write(scene.parent / "offset.wav", x + 0.15, SR, subtype="FLOAT")
    shifted = list(m.events_iter(scene.parent / "offset.wav", classify="segments", gate_db=10.0, min_duration=0.1))
    assert [(e["label"], e["start"], e["end"]) for e in shifted] == [(e["label"], e["start"], e["end"]) for e in events]
    # zero padding (or a muted stretch) longer than a tenth of the recording was taken for its
    # noise floor: the background then passed the gate and one event ran to the end
    sf.write(scene.parent / "padded.wav", np.concatenate([np.zeros(5 * SR, np.float32), x]), SR, subtype="FLOAT")
    padded = list(m.events_iter(scene.parent / "padded.wav", classify="segments", gate_db=10.0, min_duration=0.1))
    assert [(e["label"], round(e["start"] - 5, 3), round(e["end"] - 5, 3)) for e in padded] == [
        (e["label"], e["start"], e["end"]) for e in events
    ]
    # a FIFO (`<(sox ...)`) is read once: its spans are cut from that read (was a hang on a
    # FIFO and "Format not recognised" on a pipe, reading the consumed stream again)
    fifo = scene.parent / "scene.fifo"
    os.mkfifo(fifo)
    feed = threading.Thread(target=lambda: fifo.write_bytes((scene / "scene.wav").read_bytes()))
    feed.start()
    piped = list(m.events_iter(str(fifo), classify="segments", gate_db=10.0, min_duration=0.1))
    feed.join(10)
    assert [(e["label"], e["start"], e["end"]) for e in piped] == [(e["label"], e["start"], e["end"]) for e in events]
    assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(piped, events, strict=True))
    # and scored the way `attn evaluate --events` scores them: every event matched
    metrics = m.evaluate_events(scene / "events.csv", classify="segments", gate_db=10.0, min_duration=0.1)
    assert metrics["event_f1"] == 1.0 and metrics["event_error_rate"] == 0.0
    # An unreadable recording is listed as skipped, not scored as if its events were all missed.
    (scene / "broken.wav").write_bytes(b"RIFF....WAVE")
    with_bad = scene / "with_bad.csv"
    with_bad.write_text((scene / "events.csv").read_text() + "broken.wav,1.0,2.0,chirp\n")
    again = m.evaluate_events(with_bad, classify="segments", gate_db=10.0, min_duration=0.1)
    assert len(again["skipped"]) == 1 and "broken.wav" in again["skipped"][0]
    assert (again["recordings"], again["reference_events"], again["event_f1"]) == (1, 3, 1.0)
    # a label the model does not know is in the JSON's warnings too, not only on stderr
    (scene / "unknown.csv").write_text((scene / "events.csv").read_text() + f"{first_file(scene)},0.1,0.2,thunder\n")
    said = m.evaluate_events(scene / "unknown.csv", classify="segments", gate_db=10.0, min_duration=0.1)["warnings"]
    assert "annotations hold label(s) the model does not know: thunder (counted as missed)" in said


def first_file(scene) -> str:
    return (scene / "events.csv").read_text().splitlines()[1].split(",")[0]


def _metrics(ref, est):
    data = Annotated(files=["f"], events={"f": [Annotation(*r) for r in ref]})
    return event_metrics(data, {"f": [Event(*e, 1.0) for e in est]}, ["a", "b"])


def test_collars_are_200ms_onset_and_half_the_length_offset_as_sed_eval_computes_them():
    import sed_eval

    # a 2 s reference: onset 0.19 s late is matched, 0.21 s late is not; its offset collar is 1 s
    assert _metrics([("a", 1.0, 3.0)], [("a", 1.19, 3.9)])["event_f1"] == 1.0
    assert _metrics([("a", 1.0, 3.0)], [("a", 1.21, 3.0)])["event_f1"] == 0.0
    assert _metrics([("a", 1.0, 3.0)], [("a", 1.0, 4.1)])["event_f1"] == 0.0
    # a 0.2 s reference: the offset collar is 200 ms, not 0.1 s
    assert _metrics([("b", 1.0, 1.2)], [("b", 1.0, 1.39)])["event_f1"] == 1.0
    # the same lists straight through sed_eval give the same numbers
    ref, est = [("a", 1.0, 3.0), ("b", 4.0, 4.5), ("a", 6.0, 6.3)], [("a", 1.1, 3.2), ("a", 4.0, 4.5), ("a", 8.0, 9.0)]
    ours = _metrics(ref, est)
    ev = sed_eval.sound_event.EventBasedMetrics(["a", "b"], t_collar=0.2, percentage_of_length=0.5)
    seg = sed_eval.sound_event.SegmentBasedMetrics(["a", "b"], time_resolution=1.0)
    r = [{"event_label": c, "onset": a, "offset": b, "file": "f"} for c, a, b in ref]
    e = [{"event_label": c, "onset": a, "offset": b, "file": "f"} for c, a, b in est]
    ev.evaluate(r, e)
    seg.evaluate(r, e)
    assert ours["event_f1"] == pytest.approx(ev.results_overall_metrics()["f_measure"]["f_measure"])
    assert ours["event_error_rate"] == pytest.approx(ev.results_overall_metrics()["error_rate"]["error_rate"])
    assert ours["segment_f1"] == pytest.approx(seg.results_overall_metrics()["f_measure"]["f_measure"])
    assert ours["event_f1"] == pytest.approx(1 / 3)  # one of three matched, one substitution-like miss


def test_bad_annotation_rows_are_warned_and_the_rest_kept(tmp_path, caplog):
    sf.write(tmp_path / "a.wav", np.zeros(SR, dtype=np.float32), SR)
    (tmp_path / "ann.csv").write_text(
        "file,onset,offset,label\n"
        "a.wav,0.1,0.3,x\n"
        "a.wav,0.5,0.4,x\n"  # onset after offset
        "a.wav,0.1,0.3,x\n"  # duplicate
        "a.wav,0.2,0.6,x\n"  # overlaps the first: merged
        "gone.wav,0.1,0.2,x\n"  # missing recording
        "a.wav,0.7,0.9,y\n"
        "a.wav,0.2,inf,z\n"  # not a finite time
        "a.wav,1e12,2e12,z\n"  # after the end (1 s)
        "./a.wav,0.95,1e12,z\n"  # past the end: cut; the same recording, written otherwise
    )
    data = load_annotated(str(tmp_path / "ann.csv"))
    assert data.files == [str(tmp_path / "a.wav")]
    assert data.events[str(tmp_path / "a.wav")] == [Annotation("x", 0.1, 0.6), Annotation("y", 0.7, 0.9),
                                                    Annotation("z", 0.95, 1.0)]  # fmt: skip
    text = "\n".join(data.warnings)
    assert "ann.csv:3: onset 0.5 s is not before offset 0.4 s" in text
    assert (
        "ann.csv:4: duplicate" in text
        and "overlapping 'x'" in text
        and "gone.wav: annotated recording not found" in text
    )
    assert "ann.csv:8: onset/offset are not finite numbers ('0.2', 'inf'); skipped" in text
    assert "'z' annotation at 1e+12-2e+12 s starts after the recording ends (1.00 s; times are in seconds)" in text
    assert "'z' annotation at 0.95-1e+12 s runs past the recording's end (1.00 s); cut there" in text
    assert all("\n" not in w for w in data.warnings)
    # a files CSV naming the same recording by its absolute path: one recording, not two; and
    # without a split column, scoring one split says that all its recordings are in it
    (tmp_path / "files.csv").write_text(f"path\n{tmp_path / 'a.wav'}\n")
    both = load_annotated(str(tmp_path / "ann.csv"), str(tmp_path / "files.csv"), split="test")
    assert both.files == [str(tmp_path / "a.wav")]
    assert any(
        "files.csv: no split column: all its 1 recordings are scored in split 'test'" in w for w in both.warnings
    )


def test_cli_formats_and_info(trained_model, scene):
    import attn
    from attn.pipelines.store.artifact import update_header

    model = scene / "model.attn"
    model.write_bytes(trained_model.read_bytes())
    tuned = {"hop_seconds": 0.1, "settings": {"classify": "segments", "gate_db": 10.0, "min_duration": 0.1}}
    update_header(model, events=tuned)
    runner = CliRunner()
    wav = str(scene / "scene.wav")
    out = runner.invoke(app, ["predict", "-m", str(model), "--events", wav, "--format", "jsonl", "-q"])
    assert out.exit_code == 0, out.output
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [set(r) for r in recs] == [{"input", "label", "start", "end", "score"}] * len(PLACED)
    aud = runner.invoke(app, ["predict", "-m", str(model), "--events", wav, "--format", "audacity", "-q"]).stdout
    assert [line.split("\t")[2] for line in aud.splitlines()] == [r["label"] for r in recs]
    assert aud.splitlines()[0] == f"{recs[0]['start']:.3f}\t{recs[0]['end']:.3f}\t{recs[0]['label']}"
    table = runner.invoke(app, ["predict", "-m", str(model), "--events", wav, "--format", "table", "-q"]).stdout
    head, *rows = table.splitlines()  # a table, not JSON lines: a header, then one aligned row per event
    assert head.split() == ["start", "end", "label", "score", "input"] and not table.startswith("{")
    assert [row.split()[:3] for row in rows] == [[f"{r['start']:.3f}", f"{r['end']:.3f}", r["label"]] for r in recs]
    raven = runner.invoke(app, ["predict", "-m", str(model), "--events", wav, "--format", "raven", "-q"]).stdout
    head, *rows = raven.splitlines()
    assert head.split("\t")[3:5] == ["Begin Time (s)", "End Time (s)"] and len(rows) == len(PLACED)
    two = runner.invoke(app, ["predict", "-m", str(model), "--events", wav, wav, "--format", "audacity"])
    assert two.exit_code == 2 and "one recording" in two.output
    info = runner.invoke(app, ["info", str(model)]).stdout
    assert "classify segments" in info and "gate_db 10.0" in info
    assert attn.load(model).info()["events"] == tuned


def test_tuning_stores_settings_that_find_the_sounds_and_the_report_draws_them(trained_model, scene, tmp_path):
    import shutil

    import attn
    from attn.pipelines.ship.report import write_report

    run = tmp_path / "run"
    shutil.copytree(trained_model.parent, run)
    m = attn.load(run / "model.attn")
    tuned = m.tune_events(scene / "events.csv", split=None)
    assert tuned["tuned_on"]["event_f1"] == 1.0
    assert tuned["timeline"]["truth"] == [list(p) for p in PLACED]
    again = attn.load(run / "model.attn")  # stored in the file: predict --events uses it with no settings given
    assert [e["label"] for e in again.events_iter(scene / "scene.wav")] == [label for label, _, _ in PLACED]
    html = write_report(run).read_text()
    assert "Sound events: a validation recording" in html


def test_tune_events_cli_writes_a_tuned_copy_and_leaves_the_model_alone(trained_model, scene, tmp_path):
    import attn

    before = trained_model.read_bytes()
    out = tmp_path / "tuned.attn"
    runner = CliRunner()
    both = runner.invoke(app, ["tune-events", str(scene / "events.csv"), "-m", str(trained_model), "--in-place",
                               "--out", str(out)])  # fmt: skip
    assert both.exit_code == 2 and "--out" in both.output
    r = runner.invoke(app, ["tune-events", str(scene / "events.csv"), "-m", str(trained_model), "--out", str(out),
                            "--format", "json", "-q", "--threads", "1"])  # fmt: skip
    assert r.exit_code == 0, r.output
    tuned = json.loads(r.stdout)
    assert tuned["model"] == str(out) and tuned["tuned_on"]["event_f1"] == 1.0
    assert trained_model.read_bytes() == before  # the original is untouched
    m = attn.load(out)
    assert m.info()["events"]["settings"] == tuned["settings"]
    assert [e["label"] for e in m.events_iter(scene / "scene.wav")] == [label for label, _, _ in PLACED]


def test_annotations_whose_recordings_are_all_missing_say_so(tmp_path):
    """The 'recording not found' warnings were logged only after the error, so never seen."""
    (tmp_path / "ann.csv").write_text("path,onset,offset,label\nnowhere.wav,1,2,sine\n")
    with pytest.raises(InputError, match=r"no annotated recordings found \(1 annotated recording\(s\) not found, "
                                         r"e\.g\. .*nowhere\.wav\)"):  # fmt: skip
        load_annotated(str(tmp_path / "ann.csv"))


def test_a_silent_recording_is_warned_of_and_scores_zero_not_nan(trained_model, tmp_path, caplog):
    """A recording silent once mixed to mono (its channels opposite) found no event without a
    word, and `evaluate --events` printed 'F1 nan' and wrote a bare NaN (invalid JSON)."""
    x = generate_clip("sine", np.random.default_rng(0), 3.0, SR) * 0.3
    sf.write(tmp_path / "inverted.wav", np.stack([x, -x], axis=1).astype(np.float32), SR)
    (tmp_path / "ann.csv").write_text("file,onset,offset,label\ninverted.wav,1.0,2.0,sine\n")
    r = CliRunner().invoke(app, ["evaluate", "-m", str(trained_model), "--events", str(tmp_path / "ann.csv"),
                                 "-f", "json"])  # fmt: skip
    assert r.exit_code == 0 and "inverted.wav: silent" in r.stderr, r.output
    import attn

    gated = attn.load(trained_model).evaluate_events(tmp_path / "ann.csv", classify="segments", gate_db=10.0)
    assert (gated["event_f1"], gated["event_precision"], gated["estimated_events"]) == (0.0, 0.0, 0)
    json.dumps(gated, allow_nan=False)  # was a NaN F1 and precision
