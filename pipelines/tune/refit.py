"""`attn tune --refit`: retrain the best trial's recipe on train+val.

Validation has chosen the recipe, so its examples can now train the final model. Without a
validation split there is nothing to stop on, so the retrain runs exactly the best trial's best
epoch count (patience off) and keeps the last epoch; its test metrics go to refit/metrics.json.
The recipe written there (refit/recipe.yaml) has those epochs; training on train+val is what the
tune adds, not a recipe key. What validation chose for the best trial's model (the baseline's C
and blend weight, the temperature and min score, multi-label thresholds) is read from its model
file and kept, as `train.refit` keeps its own choices: with no validation left, the retrain
cannot choose them again (it blended nothing and calibrated nothing before).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..recipe.keys import with_values
from ..store.rundir import LOG, MODEL, RunLog, drop_checkpoint, start_run

log = logging.getLogger("attn.tune")


def refit_best(plan, best: dict[str, Any], run_dir: Path, device: str, callbacks=None):
    """Train the best trial's recipe on train+val for its best epoch count in `run_dir` (replaced
    if a previous refit left one); returns the TrainResult."""
    from ..data.prepared import prepare_data
    from ..device import resolve_device
    from ..recipe.load import recipe_from_dict
    from ..store.container import read_container
    from ..train.model import train_model

    chosen = read_container(Path(best["run_dir"]) / MODEL, header_only=True).header
    base = chosen.get("baseline") or {}
    blend = {"C": base["C"], "weight": base.get("blend_weight", 0.0)} if "C" in base else None
    calibration = chosen.get("calibration")
    if calibration:
        calibration = {**calibration, "fitted_on": f"validation, by trial {best['number']}'s model before the refit"}
    epochs = int(best.get("best_epoch") or best.get("epochs") or 1)
    raw = with_values(plan.base, {**best["values"], "train.epochs": epochs, "train.patience": 0})
    recipe = recipe_from_dict(raw, source=f"refit of trial {best['number']}")
    prepared = prepare_data(recipe)
    splits = prepared.splits
    merged = replace(prepared, splits={**splits, "train": [*splits["train"], *splits["val"]], "val": []})
    start_run(run_dir, recipe, replace=True)  # a previous refit's folder is replaced
    with RunLog(run_dir / LOG):
        log.info("refit: trial %d's recipe on train+val (%d + %d examples), %d epochs", best["number"],
                 len(splits["train"]), len(splits["val"]), epochs)  # fmt: skip
        result = train_model(recipe, merged, run_dir, device=resolve_device(device), callbacks=callbacks,
                             point_latest=False, blend_given=blend, calibration=calibration,
                             thresholds=chosen.get("thresholds"))  # fmt: skip
    drop_checkpoint(run_dir)
    return result
