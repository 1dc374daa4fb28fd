"""The shipped recipes run on the real shared data (skipped without it, failing in CI)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attn.cli.app import app
from attn.pipelines.recipe.load import load_recipe

runner = CliRunner()


def test_digits_recipe_reads_the_official_split(shared_data, monkeypatch):
    from attn.pipelines.data.sources import list_items, split_items

    monkeypatch.setenv("ATTN_DATA", str(shared_data))
    r = load_recipe("recipes/digits.yaml")
    splits = split_items(list_items(r.data), r.data)
    assert len(splits["test"]) == 300
    assert len(splits["train"]) + len(splits["val"]) == 2700 and len(splits["val"]) == 270
    assert all("_" in it.source and int(it.source.rsplit("_", 1)[1][:-4]) < 5 for it in splits["test"])


GENRE_SMOKE = {
    "recipes/genre.yaml": ["model.channels=[4,8]"],
    "recipes/genre_transformer.yaml": ["model.d_model=16", "model.layers=1", "model.ff_dim=32"],
    "recipes/genre_wavenet.yaml": ["model.channels=8", "model.front_channels=8", "model.skip_channels=8"],
}


@pytest.mark.parametrize("recipe", sorted(GENRE_SMOKE))
def test_genre_recipe_smoke_on_gtzan_mini(shared_data, tmp_path, monkeypatch, recipe):
    """10 clips of 30 s at 22.05 kHz: framed into 3 s windows, trained, then a whole clip is
    predicted from its windows."""
    monkeypatch.setenv("ATTN_DATA", str(shared_data))
    run_dir = tmp_path / "genre"
    sets = [x for kv in ["train.epochs=1", *GENRE_SMOKE[recipe]] for x in ("--set", kv)]
    r = runner.invoke(app, ["train", recipe, "--out", str(run_dir), "--quiet", "--format", "json", *sets])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert len(summary["labels"]) == 10 and summary["data"]["clips"]["train"] == 10
    clip = shared_data / "gtzan_mini" / "audio" / "metal.00000.wav"
    r = runner.invoke(app, ["predict", "-m", str(run_dir), str(clip), "--per-frame"])
    rec = json.loads(r.stdout)
    assert r.exit_code == 0 and rec["label"] in summary["labels"]
    assert rec["windows"] == 20 and len(rec["frames"]) == 20 and rec["duration"] == pytest.approx(30.0, abs=0.1)


@pytest.mark.slow
def test_digits_recipe_reaches_99_percent(shared_data, tmp_path, monkeypatch):
    """The full FSDD recipe (about 8 minutes on 2 cores): >= 99% on the official test split."""
    monkeypatch.setenv("ATTN_DATA", str(shared_data))
    r = runner.invoke(app, ["train", "recipes/digits.yaml", "--out", str(tmp_path / "d"), "--quiet",
                            "--format", "json", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["test_accuracy"] >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, bar", [("recipes/digits_wavenet.yaml", 0.97), ("recipes/digits_transformer.yaml", 0.98)]
)
def test_digits_family_recipes_reach_their_bar(shared_data, tmp_path, monkeypatch, recipe, bar):
    """Raw-audio WaveNet >= 97%, spectrogram transformer >= 98% (each ~10-25 minutes on 2 cores)."""
    monkeypatch.setenv("ATTN_DATA", str(shared_data))
    r = runner.invoke(app, ["train", recipe, "--out", str(tmp_path / "d"), "--quiet", "--format", "json",
                            "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["test_accuracy"] >= bar


@pytest.mark.slow
def test_quickstart_recipe_reaches_95_percent(tmp_path):
    r = runner.invoke(app, ["train", "recipes/quickstart.yaml", "--out", str(tmp_path / "q"), "--quiet",
                            "--format", "json", "--device", "cpu"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["test_accuracy"] >= 0.95
