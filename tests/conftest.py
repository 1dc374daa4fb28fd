"""Shared fixtures: real data location, generated audio, tiny recipes and a tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    return Path(os.environ.get("ATTN_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $ATTN_DATA). Skips without it, but fails in CI (ATTN_REQUIRE_DATA=1)."""
    root = data_root()
    if not (root / "fsdd" / "labels.csv").exists():
        if os.environ.get("ATTN_REQUIRE_DATA") == "1":
            pytest.fail(f"ATTN_REQUIRE_DATA=1 but the shared datasets are missing at {root}")
        pytest.skip(f"shared datasets not found at {root} (set ATTN_DATA)")
    return root


TINY_RECIPE = """\
data:
  synthetic: {{classes: [sine, noise_burst, chirp], per_class: 40, seconds: 0.5, seed: 1}}
  val_fraction: 0.2
  test_fraction: 0.2
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 24}}
model: {{name: cnn, channels: [8, 16], dropout: 0.0}}
train: {{epochs: {epochs}, batch_size: 8, lr: 0.01, patience: 0, seed: 0}}
"""


@pytest.fixture
def tiny_recipe(tmp_path: Path):
    """Write a tiny synthetic recipe; returns its path. `epochs` is adjustable."""

    def make(epochs: int = 4, name: str = "tiny.yaml") -> Path:
        p = tmp_path / name
        p.write_text(TINY_RECIPE.format(epochs=epochs))
        return p

    return make


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """A tiny model trained once per session on synthetic data (a few seconds)."""
    from attn.pipelines.recipe.load import load_recipe
    from attn.pipelines.train.run import train

    d = tmp_path_factory.mktemp("trained")
    p = d / "tiny.yaml"
    p.write_text(TINY_RECIPE.format(epochs=6))
    result = train(load_recipe(p), str(p), out=str(d / "run"), device="cpu")
    return result.model_path


@pytest.fixture(autouse=True, scope="session")
def _checkout_runs_latest_untouched():
    """attn points runs/latest (in the working directory) at every new run, wherever --out puts
    it. Tests that train into temporary folders from the repository folder would move the
    checkout's own runs/latest onto them; there, and only there, the link is left alone."""
    from attn.pipelines.store import rundir
    from attn.pipelines.train import ensemble as train_ensemble

    real = rundir.point_latest

    def point_latest(run_dir):
        if Path.cwd().resolve() != REPO:
            real(run_dir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rundir, "point_latest", point_latest)
        mp.setattr(train_ensemble, "point_latest", point_latest)
        yield


@pytest.fixture(autouse=True, scope="session")
def _encoder_cache_in_a_temporary_folder(tmp_path_factory):
    """A frozen encoder keeps its states under $ATTN_CACHE (default ~/.cache/attn): tests keep
    theirs in a temporary folder, so no run reads states a previous test session left."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTN_CACHE", str(tmp_path_factory.mktemp("attn_cache")))
        yield


@pytest.fixture(autouse=True)
def _cli_log_handlers_detached():
    """A command run in-process (CliRunner) leaves its stderr log handler on the "attn" logger,
    bound to the runner's stream, which is closed once the command returns; a later test that
    logs through the library would write to it ("I/O operation on closed file")."""
    yield
    import logging

    from attn.cli.common import cli_handlers

    logger = logging.getLogger("attn")
    for h in cli_handlers(logger):
        logger.removeHandler(h)
    logger.propagate = True


@pytest.fixture(scope="session")
def odd_text_run(tmp_path_factory):
    """A tiny text model whose labels are mathtext, Rich markup, a terminal escape sequence and a
    quoted label with a colon (tests/helpers.py: ODD_LABELS); (run dir, `attn train`'s result)."""
    import csv

    from typer.testing import CliRunner

    from attn.cli.app import app
    from helpers import ODD_LABELS, ODD_TEXT_RECIPE, WORDS

    d = tmp_path_factory.mktemp("odd")
    with open(d / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(90):
            w.writerow([f"{WORDS[i % 6]} word{i % 7}", ODD_LABELS[i % 6]])
    (d / "r.yaml").write_text(ODD_TEXT_RECIPE)
    r = CliRunner().invoke(app, ["train", str(d / "r.yaml"), "--out", str(d / "run")])
    assert r.exit_code == 0, r.output
    return d / "run", r


@pytest.fixture(scope="session")
def onnx_meta(trained_model):
    """The metadata `attn export` writes for the session's tiny audio model (3 labels)."""
    from attn.pipelines.ship.export import metadata
    from attn.pipelines.store.artifact import load_model

    return metadata(load_model(trained_model), ["waveform"])
