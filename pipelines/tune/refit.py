"""`attn tune --refit`: retrain the best trial's recipe on train+val.

Validation has chosen the recipe, so its examples can now train the final model. Without a
validation split there is nothing to stop on, so the retrain runs exactly the best trial's best
epoch count (patience off) and keeps the last epoch; its test metrics go to refit/metrics.json.
The recipe written there (refit/recipe.yaml) has those epochs; training on train+val is what the
tune adds, not a recipe key.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text
from ..recipe.space import with_values
from ..store.rundir import CHECKPOINT, LOG, RECIPE, RunLog

log = logging.getLogger("attn.tune")


def refit_best(plan, best: dict[str, Any], run_dir: Path, device: str, callbacks=None):
    """Train the best trial's recipe on train+val for its best epoch count in `run_dir` (replaced
    if a previous refit left one); returns the TrainResult."""
    import shutil

    from ..data.prepared import prepare_data
    from ..device import resolve_device
    from ..recipe.load import recipe_from_dict, recipe_to_yaml
    from ..train.model import train_model

    epochs = int(best.get("best_epoch") or best.get("epochs") or 1)
    raw = with_values(plan.base, {**best["values"], "train.epochs": epochs, "train.patience": 0})
    recipe = recipe_from_dict(raw, source=f"refit of trial {best['number']}")
    prepared = prepare_data(recipe)
    splits = prepared.splits
    merged = replace(prepared, splits={**splits, "train": [*splits["train"], *splits["val"]], "val": []})
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / RECIPE, recipe_to_yaml(recipe))
    with RunLog(run_dir / LOG):
        log.info("refit: trial %d's recipe on train+val (%d + %d examples), %d epochs", best["number"],
                 len(splits["train"]), len(splits["val"]), epochs)  # fmt: skip
        result = train_model(recipe, merged, run_dir, device=resolve_device(device), callbacks=callbacks,
                             point_latest=False)  # fmt: skip
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return result
