"""Data sources and splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attn.errors import ConfigError, InputError
from attn.pipelines.data.clips import load_clips
from attn.pipelines.data.sources import collect_labels, list_items, split_items
from attn.pipelines.recipe.config import DataConfig
from helpers import tone, write_wav


def _folder(tmp_path, per_class=10):
    root = tmp_path / "audio"
    for label, f in (("low", 200), ("high", 1200), ("mid", 600)):
        for i in range(per_class):
            write_wav(root / label / f"{i}.wav", tone(f, 0.2, 8000, seed=i), 8000)
    return root


def test_folder_per_class_and_stratified_seeded_split(tmp_path):
    root = _folder(tmp_path)
    cfg = DataConfig(root=str(root), val_fraction=0.2, test_fraction=0.2, split_seed=3)
    items = list_items(cfg)
    assert len(items) == 30 and {it.label for it in items} == {"low", "mid", "high"}
    s1, s2 = split_items(items, cfg), split_items(list(reversed(items)), cfg)
    assert [it.source for it in s1["test"]] == [it.source for it in s2["test"]]  # order-independent
    for split, n in (("train", 18), ("val", 6), ("test", 6)):
        assert len(s1[split]) == n
        assert sorted(it.label for it in s1[split]) == sorted(["low", "mid", "high"] * (n // 3))
    other = split_items(items, DataConfig(root=str(root), val_fraction=0.2, test_fraction=0.2, split_seed=4))
    assert {it.source for it in other["test"]} != {it.source for it in s1["test"]}
    assert collect_labels(s1) == ["high", "low", "mid"]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_manifests_with_split_column(tmp_path, fmt):
    root = _folder(tmp_path, per_class=4)
    rows = [
        {"file": f"{lab}/{i}.wav", "cls": lab, "part": "test" if i == 0 else "train"}
        for lab in ("low", "high") for i in range(4)
    ]  # fmt: skip
    p = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if fmt == "tsv" else ","
        p.write_text(sep.join(rows[0]) + "\n" + "".join(sep.join(r.values()) + "\n" for r in rows))
    cfg = DataConfig(manifest=str(p), root=str(root), path_column="file", label_column="cls",
                     split_column="part", val_fraction=0.25)  # fmt: skip
    splits = split_items(list_items(cfg), cfg)
    assert len(splits["test"]) == 2 and len(splits["val"]) == 2 and len(splits["train"]) == 4
    loaded = load_clips(splits["train"], cfg, 8000)
    assert len(loaded.clips) == 4 and not loaded.errors


def test_numeric_labels_sort_numerically(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,label\n" + "".join(f"{i}.wav,{i % 12}\n" for i in range(24)))
    cfg = DataConfig(manifest=str(p), val_fraction=0.0, test_fraction=0.0)
    assert collect_labels(split_items(list_items(cfg), cfg)) == [str(i) for i in range(12)]


def test_manifest_errors_name_file_and_line(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,label\na.wav,x\nb.wav,\n")
    with pytest.raises(InputError, match=r"m\.csv:3: empty 'label'"):
        list_items(DataConfig(manifest=str(p)))
    p.write_text("file,label\na.wav,x\n")
    with pytest.raises(ConfigError, match="column 'path' not found"):
        list_items(DataConfig(manifest=str(p)))
    p.write_bytes(b"path,label\na.wav,x\n\xff\xfe.wav,y\n")
    with pytest.raises(InputError, match=r"m\.csv:3: not valid UTF-8"):
        list_items(DataConfig(manifest=str(p)))
    p.write_text("path,label,split\na.wav,x,holdout\n")
    with pytest.raises(InputError, match="unknown split 'holdout'"):
        list_items(DataConfig(manifest=str(p)))
    with pytest.raises(ConfigError, match="manifest not found"):
        list_items(DataConfig(manifest=str(tmp_path / "nope.csv")))


def test_tables_read_as_their_writers_meant(tmp_path, caplog):
    """A TSV text that starts with a quote is that text, not a quoted field swallowing the next
    rows; a spreadsheet's quoted TSV field still reads; a row spanning lines is named by its
    first line; a semicolon CSV and a JSON array say what they are."""
    from attn.pipelines.data.sources import read_table

    p = tmp_path / "t.tsv"
    p.write_text('text\tlabel\n"Best movie ever!!! loved it\t1\na bore\t0\n"great" she said\t1\nthe "cut"\t0\n')
    with caplog.at_level("WARNING", logger="attn"):
        rows, lines, _ = read_table(str(p))
    assert [r["text"] for r in rows] == ['"Best movie ever!!! loved it', "a bore", '"great" she said', 'the "cut"']
    assert lines == [2, 3, 4, 5] and "read without quoting, one row per line" in caplog.text
    p.write_text('text\tlabel\n"two\tcells, ""quoted"""\t1\nplain\t0\n')  # pandas' to_csv(sep="\t")
    assert [r["text"] for r in read_table(str(p))[0]] == ['two\tcells, "quoted"', "plain"]
    c = tmp_path / "m.csv"
    c.write_text('text,label\n"line one\nline two",\nok,1\n')
    rows, lines, _ = read_table(str(c))
    assert lines == [2, 4] and rows[0]["text"] == "line one\nline two"
    c.write_text("text;label\ngreat film;pos\nawful, really;neg\n")
    with pytest.raises(InputError, match=r"m\.csv: the header is one column \('text;label'\): attn reads comma-sep"):
        read_table(str(c))
    j = tmp_path / "a.json"
    j.write_text('[\n  {"text": "hi", "label": "x"}\n]\n')
    with pytest.raises(InputError, match=r"a\.json: a JSON array; attn reads JSON Lines"):
        read_table(str(j))


def test_labels_that_differ_only_in_unicode_form_or_spaces_are_one_class(tmp_path):
    """`café` typed on macOS (e + combining accent) and elsewhere looked alike but were two
    classes; a folder ' lead' and a manifest's 'lead' were two spellings of one label."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    for name in (nfd, " lead"):
        write_wav(tmp_path / "f" / name / "a.wav", tone(440, 0.2, 8000), 8000)
    folder = list_items(DataConfig(root=str(tmp_path / "f")))
    assert sorted(it.label for it in folder) == ["café", "lead"]
    m = tmp_path / "m.csv"
    m.write_text(f"path,label\na.wav,café\nb.wav,{nfd}\nc.wav, lead \n", encoding="utf-8")
    assert collect_labels(split_items(list_items(DataConfig(manifest=str(m))), DataConfig(manifest=str(m)))) == [
        "café", "lead"]  # fmt: skip


def test_a_general_recipe_with_only_data_train_set_names_the_missing_test_file(tmp_path):
    """recipes/text.yaml with `--set data.train=FILE` alone: its placeholder test file is missing.
    The error names the key and both ways out; with data.test=null a test share is held out."""
    from typer.testing import CliRunner

    from attn.cli.app import app

    rows = "".join(f"x {i},{'a' if i % 2 else 'b'}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("text,label\n" + rows)
    args = [
        "train",
        str(Path(__file__).parents[1] / "recipes" / "text.yaml"),
        "--set",
        f"data.train={tmp_path / 't.csv'}",
    ]
    r = CliRunner().invoke(app, [*args, "--set", "train.epochs=1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and not (tmp_path / "run").exists()
    assert "data.test: my_texts/test.csv is a shipped recipe's placeholder" in r.output
    assert "data.test=null" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, [*args, "--set", "data.test=null", "--set", "train.epochs=1", "--format", "json",
                                 "--out", str(tmp_path / "run")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["count"] == 4  # data.test_fraction: 0.1


def test_folder_without_audio_is_an_error(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no audio found"):
        list_items(DataConfig(root=str(tmp_path / "empty")))


def test_the_folder_walk_follows_linked_folders_and_passes_over_macos_litter(tmp_path):
    """A class folder that is a symbolic link counts for predict as for training; a link loop
    ends; macOS zip litter (`__MACOSX/`, `._x.wav`) and dot-folders are neither files nor classes."""
    import os

    from attn.pipelines.infer.predict import expand_paths

    root = _folder(tmp_path, per_class=2)
    os.rename(root / "low", tmp_path / "low-elsewhere")
    os.symlink(tmp_path / "low-elsewhere", root / "low")
    os.symlink(root / "mid", root / "mid" / "loop")  # a loop: walked once
    for junk in ("__MACOSX/low/._0.wav", "high/._0.wav", ".trash/1.wav"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"\0\x05\x16\x07 AppleDouble")
    cfg = DataConfig(root=str(root))
    assert sorted((it.label, Path(it.source).name) for it in list_items(cfg)) == [
        (lab, f"{i}.wav") for lab in ("high", "low", "mid") for i in range(2)
    ]
    found = expand_paths([str(root)])
    assert len(found) == 6 and {Path(f).parent.name for f in found} == {"high", "low", "mid"}


def test_a_class_whose_every_training_file_is_unreadable_is_named(tmp_path):
    """A folder of failed downloads becomes a label no clip teaches: the run says so."""
    from typer.testing import CliRunner

    from attn.cli.app import app

    root = _folder(tmp_path, per_class=6)
    for i in range(6):
        (root / "broken" / f"{i}.wav").parent.mkdir(exist_ok=True)
        (root / "broken" / f"{i}.wav").write_bytes(b"")
    (tmp_path / "r.yaml").write_text(
        f"data: {{root: {root}, val_fraction: 0.0, test_fraction: 0.0}}\n"
        "features: {sample_rate: 8000, frame_seconds: 0.2, hop_seconds: 0.1, n_fft: 256, hop_length: 128, n_mels: 24}\n"
        "model: {name: cnn, channels: [8]}\ntrain: {epochs: 1, batch_size: 8, baseline: false}\n"
    )
    r = CliRunner().invoke(app, ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "class(es) 'broken' have no training clip left (every file skipped)" in r.stderr


def test_unreadable_file_is_reported_and_the_rest_load(tmp_path):
    root = _folder(tmp_path, per_class=3)
    (root / "low" / "bad.wav").write_text("not audio")
    cfg = DataConfig(root=str(root))
    loaded = load_clips(list_items(cfg), cfg, 8000)
    assert len(loaded.clips) == 9 and len(loaded.errors) == 1 and "bad.wav" in loaded.errors[0]


def test_synthetic_data_is_deterministic():
    cfg = DataConfig(synthetic={"per_class": 3, "seconds": 0.25, "seed": 7})
    items = list_items(cfg)
    assert len(items) == 18
    a, b = load_clips(items, cfg, 8000), load_clips(items, cfg, 8000)
    assert all(np.array_equal(x, y) for x, y in zip(a.clips, b.clips, strict=True))
    assert all(len(x) == 2000 and np.isfinite(x).all() and np.abs(x).max() < 1 for x in a.clips)


def test_a_file_listed_twice_is_kept_once_and_one_with_two_labels_is_an_error(tmp_path, caplog):
    wav = write_wav(tmp_path / "a" / "x.wav", tone(440, 0.2, 8000), 8000)
    write_wav(tmp_path / "b" / "y.wav", tone(220, 0.2, 8000), 8000)
    rows = ["path,label", f"{wav},a", "a/x.wav,a", "a/x.wav,a", "b/y.wav,b"]  # absolute, relative, repeated
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="attn"):
        items = list_items(DataConfig(manifest=str(tmp_path / "m.csv")))
    assert [Path(it.source).name for it in items] == ["x.wav", "y.wav"]  # copies would reach test and train both
    assert "2 file(s) listed more than once were kept once" in caplog.text
    (tmp_path / "m.csv").write_text("\n".join([*rows[:2], "a/x.wav,b"]) + "\n")
    with pytest.raises(InputError, match=r"m.csv:3: the same file as .*m.csv:2, with other labels"):
        list_items(DataConfig(manifest=str(tmp_path / "m.csv")))
    (tmp_path / "a" / "up").symlink_to("..")  # class a's folder now also reaches b's files
    with pytest.raises(InputError, match="with other labels"):
        list_items(DataConfig(root=str(tmp_path)))


def test_a_class_too_small_to_hold_out_is_named(tmp_path, caplog):
    root = _folder(tmp_path)
    write_wav(root / "rare" / "0.wav", tone(900, 0.2, 8000), 8000)
    cfg = DataConfig(root=str(root), val_fraction=0.2, test_fraction=0.2)
    with caplog.at_level("WARNING", logger="attn"):
        splits = split_items(list_items(cfg), cfg)
    assert [it.label for it in splits["train"]].count("rare") == 1
    assert "1 of 4 classes have too few examples to hold one out for val or test: 'rare' (1 example)" in caplog.text


def test_label_cells_as_users_write_them(tmp_path, caplog):
    """Without multi_label: `["joy"]` (a JSONL writer's list of one) was the class '["joy"]', a
    list of two one more class; 1 and 1.0 (pandas' int column with a gap) two classes; labels
    joining others ('approval;neutral') combination classes, unsaid; and a CSV text over 131,072
    characters 'malformed CSV'."""
    j = tmp_path / "t.jsonl"
    rows = [{"text": "a", "label": ["joy"]}, {"text": "b", "label": 1}, {"text": "c", "label": 1.0}]
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list_items(DataConfig(manifest=str(j)), "text")
    assert [it.label for it in items] == ["joy", "1", "1"]
    j.write_text(json.dumps({"text": "a", "label": ["joy", "love"]}) + "\n")
    with pytest.raises(InputError, match=r"t\.jsonl:1: the label is a list of 2 labels; set data.multi_label=true"):
        list_items(DataConfig(manifest=str(j)), "text")
    j.write_text(json.dumps({"text": "a", "label": []}) + "\n")
    with pytest.raises(InputError, match=r"t\.jsonl:1: empty label$"):
        list_items(DataConfig(manifest=str(j)), "text")
    c = tmp_path / "t.csv"
    c.write_text("text,label\na,approval\nb,neutral\nc,approval;neutral\nd,x;y\n" + f'"{"long " * 40_000}",x\n')
    with caplog.at_level("WARNING", logger="attn"):
        items = list_items(DataConfig(manifest=str(c)), "text")
    assert [it.label for it in items] == ["approval", "neutral", "approval;neutral", "x;y", "x"]
    assert len(items[-1].source) == 200_000
    assert "1 label(s) like 'approval;neutral' join labels that also stand alone (approval, neutral)" in caplog.text


def test_audio_in_containers_attn_does_not_read_is_named_not_dropped_unsaid(tmp_path, caplog):
    """A class of phone recordings (.m4a) was left out of training without a word, and predict on
    their folder said only 'directory contains no audio files'."""
    root = _folder(tmp_path, per_class=3)
    (root / "voice").mkdir()
    for i in range(2):
        (root / "voice" / f"memo{i}.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (root / "low" / "extra.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    (root / "low" / "notes.txt").write_text("not audio, not said")
    with caplog.at_level("WARNING", logger="attn"):
        items = list_items(DataConfig(root=str(root)))
    assert {it.label for it in items} == {"low", "high", "mid"}
    assert "voice: 2 .m4a file(s) not read (convert them to WAV or FLAC, e.g. ffmpeg -i x.m4a x.wav); class " \
           "'voice' is left out: it has no audio attn reads" in caplog.text  # fmt: skip
    assert (
        "low: 1 .m4a file(s) not read" in caplog.text and "notes.txt" not in caplog.text and ".txt" not in caplog.text
    )


def test_predict_on_a_folder_of_m4a_names_them(trained_model, tmp_path):
    from typer.testing import CliRunner

    from attn.cli.app import app

    for i in range(2):
        (tmp_path / f"memo{i}.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    r = CliRunner().invoke(app, ["predict", "-m", str(trained_model), str(tmp_path), "-f", "jsonl"])
    assert r.exit_code == 1
    note = "2 .m4a file(s) not read (convert them to WAV or FLAC, e.g. ffmpeg -i x.m4a x.wav)"
    assert json.loads(r.stdout)["error"] == f"{tmp_path}: directory contains no audio files ({note})"
    # beside audio it reads, predict went on without a word of them
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "good.wav"), (0.3 * np.sin(np.arange(4000) / 8000 * 2 * np.pi * 440)).astype(np.float32),
             8000)  # fmt: skip
    r = CliRunner().invoke(app, ["predict", "-m", str(trained_model), str(tmp_path), "-f", "jsonl"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1
    assert f"{tmp_path}: {note}" in r.stderr


def test_copies_of_training_examples_in_val_or_test_are_warned_about(tmp_path, caplog):
    """A test file made from the head of train scored 1.0 without a word (text), and so did byte
    copies of training clips under other names (audio); only the same path was caught."""
    import shutil

    from attn.pipelines.data.dedupe import warn_cross_split_copies
    from attn.pipelines.data.items import Item

    texts = [Item(f"Text number {i}", "a", "train") for i in range(6)]
    held = [Item("text  NUMBER 2", "a", "test", "t.csv:2"), Item("something new", "a", "test", "t.csv:3")]
    with caplog.at_level("WARNING", logger="attn"):
        warn_cross_split_copies({"train": texts, "val": [], "test": held}, "text")
    assert "data: 1 of 2 test examples (e.g. t.csv:2) are copies of training texts" in caplog.text
    root = _folder(tmp_path, per_class=3)
    train = [Item(str(p), p.parent.name, "train") for p in sorted(root.rglob("*.wav"))]
    deep = tmp_path / ("a_long_folder_name_" * 4)  # the path runs past the message's 80 characters
    deep.mkdir()
    copy = shutil.copy(root / "low" / "1.wav", deep / "renamed.wav")
    other = write_wav(tmp_path / "other.wav", tone(200, 0.2, 8000, seed=99), 8000)  # same size, other bytes
    caplog.clear()
    with caplog.at_level("WARNING", logger="attn"):
        warn_cross_split_copies({"train": train, "val": [Item(str(other), "low", "val")],
                                 "test": [Item(str(copy), "low", "test")]}, "audio")  # fmt: skip
    # the example's path ends in its file name, however long the folder before it (cut to 80 characters)
    assert "data: 1 of 1 test examples (e.g. " in caplog.text
    assert f"{Path(copy).name}) are copies of training files (the same bytes)" in caplog.text
    assert "val examples" not in caplog.text


def test_too_few_examples_in_every_class_to_hold_any_out_is_said_at_the_start(caplog):
    """With 147 classes of at most 3 texts the run had no val or test split, said only at the end
    ('no test or validation clips')."""
    from attn.pipelines.data.items import Item

    items = [Item(f"text {c} {i}", f"c{c}", None) for c in range(20) for i in range(3)]
    with caplog.at_level("WARNING", logger="attn"):
        splits = split_items(items, DataConfig(train="x.csv"))
    assert not splits["val"] and not splits["test"] and len(splits["train"]) == 60
    assert "every class has too few examples to hold one out (at most 3 each, at val_fraction 0.1 and " \
           "test_fraction 0.1): no val or test split, so no early stopping on validation" in caplog.text  # fmt: skip
    assert "no test scores" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="attn"):  # a test file given: only validation is missing
        split_items([*items, Item("t", "c0", "test")], DataConfig(train="x.csv"))
    assert "no val split, so no early stopping" in caplog.text and "test scores" not in caplog.text


def test_a_folder_given_as_a_split_file_is_called_a_folder(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\n")
    (tmp_path / "edge").mkdir()
    with pytest.raises(
        ConfigError, match=r"^data\.test: .*edge: a folder; data\.test takes a manifest file \(CSV/TSV/JSONL\)$"
    ):
        list_items(DataConfig(train=str(tmp_path / "t.csv"), test=str(tmp_path / "edge")), "text")


def test_silent_training_clips_are_warned_about(tmp_path, caplog):
    """All-zero clips and stereo that cancels in the mono mix were trained on unsaid (predict
    flags the same files)."""
    from attn.pipelines.data.prepared import load_datasets, prepare_data
    from attn.pipelines.recipe.load import load_recipe

    root = _folder(tmp_path, per_class=4)
    sf = pytest.importorskip("soundfile")
    x = tone(440, 0.2, 8000)
    sf.write(root / "low" / "cancels.wav", np.stack([x, -x], 1), 8000, subtype="FLOAT")
    write_wav(root / "mid" / "zeros.wav", np.zeros(1600, np.float32), 8000)
    p = tmp_path / "r.yaml"
    p.write_text(f"data: {{root: {root}, val_fraction: 0, test_fraction: 0}}\n"
                 "features: {sample_rate: 8000, frame_seconds: 0.2, hop_seconds: 0.1, n_fft: 256, hop_length: 128, "
                 "n_mels: 16}\nmodel: {name: cnn}\n")  # fmt: skip
    r = load_recipe(p)
    with caplog.at_level("WARNING", logger="attn"):
        load_datasets(r, prepare_data(r))
    assert "data: 2 training clip(s) are silent" in caplog.text


def test_folders_and_manifests_that_cannot_be_read_are_named(tmp_path, monkeypatch):
    """A class folder without read permission was passed over without a word (a class fewer,
    exit 0); predict and evaluate dropped its files; an unreadable manifest was an internal error.
    Permissions are simulated (the tests may run as root, whom chmod does not stop)."""
    import os

    from attn.pipelines.data.sources import read_table
    from attn.pipelines.infer.predict import expand_paths

    root = _folder(tmp_path, per_class=2)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("mid"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"audio/mid: cannot read folder \(permission denied\)$"):
        list_items(DataConfig(root=str(root)))
    listed = expand_paths([str(root)])
    assert str(root / "mid") in listed and len(listed) == 5  # 4 clips, and the folder as an error record
    monkeypatch.undo()
    m = tmp_path / "m.csv"
    m.write_text("text,label\na,b\n")
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
    )
    with pytest.raises(InputError, match=r"m\.csv: cannot read \(permission denied\)$"):
        read_table(str(m))


def test_a_folder_name_that_is_not_utf8_is_a_label_of_text():
    """Its bytes, kept as lone surrogates, were the label: report.html's figures failed on it."""
    import os

    from attn.pipelines.data.items import clean_label

    assert clean_label(os.fsdecode(b"lab\xe9")) == "lab\ufffd"
    assert clean_label(" café ") == "café"


def test_older_models_find_labels_that_json_floats_now_read_as_whole_numbers():
    """A model trained on JSONL labels 0.0/1.0 stored "0.0"/"1.0"; the same data now reads "0"/"1"
    (one class with "1" written elsewhere), and evaluate said 'label '0' is not one the model was
    trained on'. An empty JSON list is an empty label, not 'a list of 0 labels'."""
    from attn.pipelines.data.items import Item, label_index
    from attn.pipelines.data.prepared import targets

    assert targets([Item("a", "1"), Item("b", "0")], ["0.0", "1.0"]).tolist() == [1, 0]
    assert label_index(["1", "1.0"]) == {"1": 0, "1.0": 1}  # both labels exist: each is its own


def test_a_csvs_1_and_1_0_are_said_to_name_the_same_number(tmp_path, caplog):
    """Strings in a CSV stay as written (a label "2.0" may mean what it says), but "1" beside "1.0"
    made two classes without a word."""
    c = tmp_path / "n.csv"
    c.write_text("text,label\na,1\nb,0\nc,1.0\nd,0.0\ne,2.5\n")
    with caplog.at_level("WARNING", logger="attn"):
        assert [it.label for it in list_items(DataConfig(manifest=str(c)), "text")] == ["1", "0", "1.0", "0.0", "2.5"]
    assert "label(s) '0.0', '1.0' and '0', '1' name the same numbers: they are different classes" in caplog.text


def test_copies_of_a_text_are_carved_into_one_split():
    """A training set of every row 3 times left 2055 of 2076 validation texts copies of training
    ones: validation (1.0) chose the epoch, the blend and the calibration. Without copies the
    carve is the draw it always was."""
    from attn.pipelines.data.items import Item
    from attn.pipelines.data.sources import split_items
    from attn.pipelines.recipe.config import DataConfig

    cfg = DataConfig(root="unused", val_fraction=0.2, test_fraction=0.2)
    unique = [Item(f"text number {i}", "ab"[i % 2]) for i in range(200)]
    tripled = [Item(t, it.label) for it in unique for t in (it.source, it.source.upper(), f" {it.source} ")]
    splits = split_items(tripled, cfg)
    key = lambda it: " ".join(it.source.split()).casefold()  # noqa: E731
    seen = {s: {key(it) for it in splits[s]} for s in ("train", "val", "test")}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert 0.15 < len(splits["val"]) / len(tripled) < 0.25
    # without copies, each text lands where the plain draw puts it
    again = split_items(unique, cfg)
    assert [len(again[s]) for s in ("train", "val", "test")] == [120, 40, 40]
