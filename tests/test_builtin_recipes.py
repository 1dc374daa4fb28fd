"""The shipped recipes by name: `attn train audio.yaml` and `extends: audio.yaml` from any folder,
in a checkout and from an installed wheel (which carries them as attn/recipes/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.errors import ConfigError
from attn.pipelines.recipe.load import load_recipe

REPO = Path(__file__).resolve().parents[1]


def test_a_bare_name_is_a_shipped_recipe_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = load_recipe("audio.yaml", ["data.root=sounds"])
    assert r.model.name == "cnn" and Path(r.data.root) == tmp_path / "sounds"  # --set is relative to here
    assert load_recipe("text_pretrained", ["data.train=t.csv"]).features.encoder is not None  # .yaml optional
    # `extends:` by name from a recipe in another folder: its data section, the shipped model.
    (tmp_path / "mine.yaml").write_text("extends: text.yaml\ndata:\n  train: t.csv\n")
    r = load_recipe(tmp_path / "mine.yaml")
    assert r.model.name == "cnn1d" and Path(r.data.train) == tmp_path / "t.csv"


def test_a_file_the_user_has_wins_over_a_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audio.yaml").write_text("data: {synthetic: {}}\nmodel: {name: wavenet}\n")
    assert load_recipe("audio.yaml").model.name == "wavenet"
    (tmp_path / "child.yaml").write_text("extends: audio.yaml\n")
    assert load_recipe(tmp_path / "child.yaml").model.name == "wavenet"
    # a file named audio.yaml that extends audio.yaml means the shipped one (it was "a cycle")
    (tmp_path / "audio.yaml").write_text("extends: audio.yaml\ndata: {root: snd}\n")
    assert load_recipe("audio.yaml").model.name == "cnn"


def test_unknown_names_list_the_shipped_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = r"^audoi\.yaml: recipe file not found; built-in recipes: audio, .*text_pretrained"
    with pytest.raises(ConfigError, match=listed):
        load_recipe("audoi.yaml")
    with pytest.raises(ConfigError, match=r"recipe file not found; the shipped recipe of that name: audio\.yaml$"):
        load_recipe("recipes/audio.yaml")  # a path names a file, never a built-in: the README's form outside a clone
    with pytest.raises(ConfigError, match=r"recipe file not found$"):
        load_recipe("sub/mine.yaml")
    (tmp_path / "c.yaml").write_text("extends: txet.yaml\n")
    with pytest.raises(ConfigError, match=r"extends txet\.yaml: recipe file not found .*; built-in recipes: "):
        load_recipe(tmp_path / "c.yaml")


def test_a_general_recipe_run_as_it_is_names_the_key_to_set(tmp_path, monkeypatch):
    """Not "/.../site-packages/attn/recipes/my_sounds: data folder not found"."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "audio.yaml"])
    assert res.exit_code == 2
    assert res.output.strip() == ("error: data.root: my_sounds is a shipped recipe's placeholder; "
                                  "point it at your data: --set data.root=DIR (a folder per class)")  # fmt: skip
    (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\n")
    res = CliRunner().invoke(app, ["train", str(REPO / "recipes" / "text.yaml"), "--set", "data.train=t.csv"])
    assert res.exit_code == 2
    assert (
        "error: data.test: my_texts/test.csv is a shipped recipe's placeholder; point it at your data: "
        "--set data.test=FILE, or data.test=null to hold out data.test_fraction of data.train" in res.output
    )


def test_an_installed_wheel_finds_its_recipes_by_name(tmp_path):
    """Built from this checkout's files; imported from the unpacked wheel, not the checkout."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "attn", "cli", "pipelines", "features", "models", "recipes"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist",
         "."],
        cwd=src, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (src / "dist").glob("attn-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        assert {f"attn/recipes/{p.name}" for p in (REPO / "recipes").glob("*.yaml")} <= set(z.namelist())
        z.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    code = ("import attn.pipelines.recipe.load as L; r = L.load_recipe('audio.yaml', ['data.root=s']); "
            "print(L.__file__); print(r.model.name, r.data.root)")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    where, got = run.stdout.split("\n")[:2]
    assert where.startswith(str(site)) and got == f"cnn {work / 's'}"


def test_a_manifest_set_on_the_general_audio_recipe_reads_its_paths_from_its_folder(tmp_path, monkeypatch):
    """The README's `attn train recipes/audio.yaml --set data.manifest=clips.csv` looked for every
    clip inside the recipe's placeholder folder recipes/my_sounds/ (a root beside a manifest is
    where its relative paths start): 'none of the 40 training files probed'."""
    from attn.pipelines.data.sources import list_items

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips.csv").write_text("path,label\nclips/a.wav,x\nclips/b.wav,y\n")
    for recipe in ("audio.yaml", str(REPO / "recipes" / "audio.yaml")):
        r = load_recipe(recipe, ["data.manifest=clips.csv"])
        assert r.data.root is None
        assert [it.source for it in list_items(r.data)] == [str(tmp_path / "clips" / n) for n in ("a.wav", "b.wav")]
    # a root of the user's own that is missing is named, not 'file not found' for every clip
    r = load_recipe(recipe, ["data.manifest=clips.csv", "data.root=nowhere"])
    with pytest.raises(ConfigError, match=r"^data\.root: .*nowhere: folder not found \(beside a manifest"):
        list_items(r.data)
    # absolute paths never need the root: a stale one (a recipe moved to another machine) reads as before
    (tmp_path / "abs.csv").write_text(
        f"path,label\n{tmp_path / 'clips' / 'a.wav'},x\n{tmp_path / 'clips' / 'b.wav'},y\n"
    )
    r = load_recipe(recipe, ["data.manifest=abs.csv", "data.root=nowhere"])
    assert len(list_items(r.data)) == 2


def test_a_dataset_recipe_without_its_data_names_attn_data(monkeypatch):
    """`attn train trec.yaml` outside a checkout looked for ../../shared/data beside the installed
    package and said only 'manifest not found'."""
    from attn.pipelines.recipe.builtin import builtin_dir, check_placeholders
    from attn.pipelines.recipe.config import DataConfig

    monkeypatch.delenv("ATTN_DATA", raising=False)
    missing = (builtin_dir() / "../../shared/data/no-such-set/train.csv").resolve()
    with pytest.raises(
        ConfigError,
        match=r"^data\.train: .*no-such-set/train\.csv not found: the shipped dataset "
        r"recipes read their data from \$ATTN_DATA \(unset\)",
    ):
        check_placeholders(DataConfig(train=str(missing)))
