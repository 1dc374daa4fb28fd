"""`attn tune`: the recipe's tune: section, trials scored on validation, pruning, failures, the
tune directory, kill -9 and --resume, and several processes sharing one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import attn
from attn.cli.app import app
from attn.models import registry
from attn.pipelines.recipe.load import load_recipe

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

RECIPE = """\
data:
  synthetic: {{classes: [sine, noise_burst, chirp], per_class: 14, seconds: 0.5, seed: 1}}
  val_fraction: 0.25
  test_fraction: 0.2
features: {{sample_rate: 8000, frame_seconds: 0.5, hop_seconds: 0.25, n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: cnn, channels: [4, 8], dropout: 0.0}}
train: {{epochs: {epochs}, batch_size: 8, lr: 0.02, patience: 0, seed: 0}}
"""


@pytest.fixture(autouse=True)
def one_thread():
    """Trials of these tiny models run fastest on one thread (the machine may be busy)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_recipe(tmp_path: Path, epochs: int = 3, tune: dict | None = None, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    text = RECIPE.format(epochs=epochs)
    if tune is not None:
        text += yaml.safe_dump({"tune": tune}, default_flow_style=False)
    p.write_text(text)
    return p


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


LR = {"train.lr": {"log_uniform": [0.005, 0.05]}}


@pytest.mark.parametrize(
    ("tune", "says"),
    [
        ({"train.lr": {"loguniform": [1e-4, 1e-2]}}, "tune.train.lr: unknown distribution 'loguniform'; did you mean"),
        ({"train.lr": {"log_uniform": [0.0, 1e-2]}}, "tune.train.lr: log_uniform needs low > 0"),
        ({"model.dropout": {"uniform": [0.5, 0.1]}}, "tune.model.dropout: uniform needs low < high"),
        ({"train.lr": {"log_uniform": [1e-4, 1e-2], "step": 1}}, "tune.train.lr: unknown option 'step'"),
        (
            {"train.lrr": {"log_uniform": [1e-4, 1e-2]}},
            "tune.train.lrr: not a key of this recipe; did you mean 'train.lr'",
        ),
        ({"features.tokenizer.max_len": {"int": [8, 64]}}, "tune.features.tokenizer.max_len: not a key of this recipe"),
        ({"model.dropout": {"uniform": [0.0, 1.5]}}, "tune.model.dropout: 1.5 is not a valid value here"),
        ({"model.pool": {"choice": ["mean", "maxx"]}}, "tune.model.pool: 'maxx' is not a valid value here"),
        ({"data.val_fraction": {"uniform": [0.1, 0.3]}}, "tune.data.val_fraction: cannot be tuned"),
        ({"train.epochs": {"choice": [3]}}, "tune.train.epochs: choice needs at least two values"),
        # a bound the recipe's rules between keys refuse (16 mel bands): best.yaml could not train
        ({"train.augment.freq_mask": {"int": [0, 40]}}, "tune.train.augment.freq_mask: 40 is not a valid value"),
        ({"train.ensemble": {"choice": [1, 2]}}, "tune.train.ensemble: cannot be tuned"),
        ({"train.folds": {"choice": [0, 2]}}, "tune.train.folds: cannot be tuned"),
        ("lr", "tune: expected a mapping of dotted recipe keys"),
    ],
)
def test_a_bad_tune_section_is_a_recipe_error_before_any_training(tmp_path, tune, says):
    recipe = write_recipe(tmp_path, tune=tune)
    r = runner.invoke(app, ["tune", str(recipe), "--out", str(tmp_path / "t")])
    assert r.exit_code == 2, r.output
    assert says in r.stderr and str(recipe) in r.stderr
    assert not (tmp_path / "t").exists()  # nothing was set up, let alone trained
    # The same recipe is refused by attn train too: the section is validated with the recipe.
    assert runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")]).exit_code == 2


@pytest.mark.parametrize("key, value", [("train.ensemble", 2), ("train.folds", 2)])
def test_an_ensemble_or_folds_recipe_is_refused_before_any_trial(tmp_path, key, value):
    """Every trial of an ensemble failed (an internal error); folds were ignored by the trials
    yet kept in best.yaml."""
    r = runner.invoke(app, ["tune", str(write_recipe(tmp_path)), "--set", f"{key}={value}", "--out",
                            str(tmp_path / "t")])  # fmt: skip
    assert r.exit_code == 2 and f"a recipe with {key} {value} cannot be tuned" in r.stderr, r.output
    assert not (tmp_path / "t").exists()


def test_an_unusable_device_is_refused_before_the_study_exists(tmp_path):
    """A study (study.db, tune.json) was left behind, and the same command again joined it."""
    bad = "cuda:99" if __import__("torch").cuda.is_available() else "cuda"
    r = runner.invoke(app, ["tune", str(write_recipe(tmp_path)), "--device", bad, "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and f"--device {bad}" in r.stderr, r.output
    assert not (tmp_path / "t").exists()


def test_default_space_fits_every_shipped_recipe_and_contains_it():
    """Without a tune: section each family's default space applies; the recipe as written is a
    point of it, so trial 0 scores the untuned recipe."""
    from attn.pipelines.recipe.keys import get as current
    from attn.pipelines.recipe.space import default_space

    for path in sorted((REPO / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        space = default_space(recipe)
        plain = recipe.model_dump(mode="json")
        assert "train.lr" in space.params and any(k.startswith("model.") for k in space.params), path
        for key, dist in space.params.items():
            assert dist.contains(current(plain, key)), (path, key)
        load_recipe(path, [])  # the space's keys and bounds passed the recipe's own validation:
        from attn.pipelines.recipe.load import resolve_recipe

        resolve_recipe({**plain, "tune": space.model_dump()})


@pytest.mark.parametrize("name", registry.names())
def test_every_family_declares_a_default_space_over_its_own_keys(name):
    family = registry.get(name)
    space = family.tune_space(family.Config())
    assert space and set(space) <= set(family.Config.model_fields), name
    assert "dropout" in space, name


def test_trials_are_ordinary_trainings_scored_on_validation(tmp_path):
    recipe = write_recipe(tmp_path, tune=LR | {"model.dropout": {"uniform": [0.0, 0.3]}})
    out = tmp_path / "t"
    result = attn.tune(recipe, trials=3, out=out, refit=True, device="cpu")
    recs = lines(out / "trials.jsonl")
    assert [r["number"] for r in recs] == [0, 1, 2] and all(r["state"] == "complete" for r in recs)
    assert recs[0]["baseline"] and recs[0]["values"] == {"train.lr": 0.02, "model.dropout": 0.0}
    for r in recs:
        run = out / "trials" / f"trial-{r['number']:04d}"
        history = lines(run / "history.jsonl")
        # The trial's score is its best validation epoch: never the test split.
        assert r["value"] == max(h["val_accuracy"] for h in history)
        trained = load_recipe(run / "recipe.yaml")
        assert trained.train.lr == pytest.approx(r["values"]["train.lr"]) and trained.tune is None
        assert (run / "model.attn").exists() and not (run / "last.ckpt").exists()
    best = result.best
    assert best["value"] == max(r["value"] for r in recs)
    assert load_recipe(out / "best.yaml") == load_recipe(out / "best" / "recipe.yaml")  # the recipe's refit: false
    assert os.readlink(out / "best") == f"trials/trial-{best['number']:04d}"
    assert set(json.loads((out / "importances.json").read_text())) <= {"train.lr", "model.dropout"}
    # --refit: the best recipe retrained on train+val for the best trial's epochs.
    refit = load_recipe(out / "refit" / "recipe.yaml")
    assert refit.train.epochs == best["best_epoch"]
    clips = result.refit["data"]["clips"]
    assert clips["val"] == 0 and clips["train"] == 25 + 8  # 42 clips: 25 train, 8 val, 9 test
    # and it keeps what validation chose for the best trial's model (it blended and calibrated nothing)
    from attn.pipelines.store.container import read_container

    chosen = read_container(out / "best" / "model.attn", header_only=True).header
    kept = read_container(out / "refit" / "model.attn", header_only=True).header
    assert kept["baseline"]["C"] == chosen["baseline"]["C"]
    assert kept["baseline"].get("blend_weight") == chosen["baseline"].get("blend_weight")
    assert kept["calibration"]["temperature"] == chosen["calibration"]["temperature"]


def test_trials_never_refit_so_a_recipe_with_refit_tunes(tmp_path):
    """A trial is scored on validation: the general recipes' `refit: auto` (on for small sets)
    refitted each trial on train + val, whose epochs carry no validation score, and every trial
    failed with 'no validation examples'. best.yaml keeps the recipe's refit for the final run."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        RECIPE.format(epochs=2).replace("seed: 0}", "seed: 0, refit: true}")
        + "tune: {train.lr: {log_uniform: [0.005, 0.05]}}\n"
    )
    out = tmp_path / "t"
    attn.tune(recipe, trials=2, out=out, device="cpu")
    recs = lines(out / "trials.jsonl")
    assert [r["state"] for r in recs] == ["complete", "complete"], recs
    run = out / "trials" / "trial-0000"
    assert "refit:" not in (run / "train.log").read_text() and not load_recipe(run / "recipe.yaml").train.refit
    assert load_recipe(out / "best.yaml").train.refit is True


def test_pruning_stops_a_hopeless_trial(tmp_path):
    """After three finished trials, a trial whose learning rate leaves it at chance is stopped
    at the first epoch the median pruner may judge."""
    recipe = write_recipe(tmp_path, epochs=4, tune={"train.lr": {"choice": [0.02, 1.0e-9]}})
    good, hopeless = {"train.lr": 0.02}, {"train.lr": 1.0e-9}
    result = attn.tune(recipe, trials=4, out=tmp_path / "t", first=[good, good, hopeless], device="cpu")
    recs = {r["number"]: r for r in result.trials}
    assert [recs[n]["state"] for n in range(3)] == ["complete"] * 3
    assert recs[3]["state"] == "pruned" and recs[3]["values"] == hopeless
    assert recs[3]["epochs"] == 2 and "pruned at epoch 2" in recs[3]["pruned"]
    assert not (tmp_path / "t" / "trials" / "trial-0003" / "model.attn").exists()
    assert result.counts.pruned == 1 and result.best["number"] != 3


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    recipe = write_recipe(tmp_path, tune={"train.lr": {"log_uniform": [0.005, 1.0e9]}})
    result = attn.tune(recipe, trials=3, out=tmp_path / "t", first=[{"train.lr": 1.0e8}], device="cpu")
    recs = {r["number"]: r for r in lines(tmp_path / "t" / "trials.jsonl")}
    assert recs[1]["state"] == "failed" and "training diverged: loss is nan" in recs[1]["error"]
    assert recs[0]["state"] == recs[2]["state"] == "complete"
    assert result.counts.failed == 1 and result.counts.done == 3


def test_the_time_budget_stops_starting_trials(tmp_path):
    recipe = write_recipe(tmp_path, epochs=4, tune=LR)
    result = attn.tune(recipe, trials=500, timeout="4s", out=tmp_path / "t", device="cpu")
    assert result.counts.done < 500 and result.counts.running == 0
    for r in result.trials:
        if "time is up" in r.get("pruned", ""):
            assert r["epochs"] < 4


def test_joining_a_tune_directory_continues_its_study(tmp_path):
    recipe = write_recipe(tmp_path, epochs=2, tune=LR)
    attn.tune(recipe, trials=2, out=tmp_path / "t", device="cpu")
    result = attn.tune(recipe, trials=3, out=tmp_path / "t", device="cpu")
    assert [r["number"] for r in result.trials] == [0, 1, 2]
    other = write_recipe(tmp_path, epochs=2, tune={"train.lr": {"log_uniform": [0.001, 0.05]}}, name="r2.yaml")
    with pytest.raises(attn.ConfigError, match="holds another tune"):
        attn.tune(other, trials=3, out=tmp_path / "t", study="r", device="cpu")


def _attn(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "ATTN_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "attn.cli", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def test_kill_9_mid_trial_then_resume_loses_no_finished_trial(tmp_path):
    recipe = write_recipe(tmp_path, epochs=12, tune=LR)
    out = tmp_path / "t"
    proc = _attn("tune", recipe, "--trials", 4, "--out", out, "-q", "--threads", 1)
    running = out / "trials" / "trial-0002" / "history.jsonl"  # trial 2 has finished an epoch
    deadline = time.monotonic() + 300
    while not running.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["number"]: r for r in lines(out / "trials.jsonl")}
    assert sorted(before) == [0, 1] and all(r["state"] == "complete" for r in before.values())

    result = attn.tune(resume=out, device="cpu")
    after = {r["number"]: r for r in lines(out / "trials.jsonl")}
    for n, r in before.items():  # the finished trials are kept as they were
        assert after[n] == r
    assert after[2]["state"] == "failed" and after[2]["interrupted"]
    assert after[2]["value"] is None  # its last epoch's score showed in the leaderboard as if a result
    retry = [r for r in after.values() if r.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0]["values"] == after[2]["values"] and retry[0]["state"] == "complete"
    assert result.counts.done == 4 and result.counts.running == 0  # the requested trial count
    assert not (out / "trials" / "trial-0002" / "last.ckpt").exists()


def test_two_processes_share_one_study(tmp_path):
    recipe = write_recipe(tmp_path, epochs=8, tune=LR)  # trials long enough that both workers get some
    out = tmp_path / "t"
    proc = _attn("tune", recipe, "--trials", 4, "--jobs", 2, "--out", out, "--format", "json")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, (stderr, stdout)
    summary = json.loads(stdout)
    numbers = [r["number"] for r in summary["leaderboard"]]
    assert sorted(numbers) == list(range(len(numbers))) and len(numbers) >= 4  # no collision, none lost
    assert len({r["pid"] for r in summary["leaderboard"]}) == 2  # both workers' trials on the leaderboard
    assert lines(out / "trials.jsonl") == sorted(summary["leaderboard"], key=lambda r: r["number"])


def test_durations_and_storage_urls_as_a_user_writes_them():
    from attn.pipelines.tune.run import parse_duration
    from attn.pipelines.tune.study import storage_url

    assert [parse_duration(v) for v in ("90s", "30m", "2h", "1h30m", "45", 12)] == [90, 1800, 7200, 5400, 45, 12]
    for bad in ("soon", "0", "-5m", ""):
        with pytest.raises(attn.ConfigError, match="timeout"):
            parse_duration(bad)
    # A password never reaches the log or the JSON summary.
    assert storage_url("postgresql://ann:s3cret@db:5432/attn") == "postgresql://ann:***@db:5432/attn"
    assert storage_url("sqlite:////tmp/t/study.db") == "sqlite:////tmp/t/study.db"
