"""`train.refit`: after early stopping chose the epoch count on validation, train a fresh model
of the same seed on train + val for that many epochs, with the baseline refitted beside it."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from attn.errors import Interrupted

from ..data.prepared import Datasets
from ..recipe.config import Recipe

log = logging.getLogger("attn")

REFIT_SHARE = 0.2  # validation's share of the labelled examples from which `refit: auto` refits
REFIT_SMALL = 1000  # training examples below which `refit: auto` refits


def should_refit(recipe: Recipe, data: Datasets) -> tuple[bool, str]:
    """(whether to retrain on train + val, why): `train.refit`, and for auto the share of labels
    validation holds back (ESC-10's official folds keep 25% out) or a small training set."""
    mode, n_train, n_val = recipe.train.refit, len(data.train), len(data.val)
    if mode is False or not n_val:
        return False, ""
    share = n_val / (n_train + n_val)
    why = f"validation holds {share:.0%} of the {n_train + n_val} labelled examples"
    if mode is True:
        return True, why
    if share >= REFIT_SHARE:
        return True, why + f" (>= {REFIT_SHARE:.0%})"
    if n_train < REFIT_SMALL:
        return True, f"{n_train} training examples (< {REFIT_SMALL})"
    return False, ""


@contextmanager
def interruptible_refit(run_dir: Path, epochs: int):
    """Ctrl-C during the refit: the first phase's last epoch is in the checkpoint, so `--resume`
    goes straight back into the refit (nothing of it is saved)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during the refit on train + val, after the first phase's {epochs} epochs "
            f"(model.attn is still the first phase's model). Finish with: attn train --resume "
            f"{run_dir}"
        ) from None


@contextmanager
def interruptible_finish(run_dir: Path, epochs: int):
    """Ctrl-C or SIGTERM after the last epoch (the blend, calibration, final scores, the model
    file): said as such, with the resume that finishes the run, not a bare 'interrupted'."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while finishing the run after its {epochs} epochs (blend, calibration, final scores, "
            f"the model file, the report); the trained state is saved. Finish with: attn train --resume {run_dir}"
        ) from None


def refit_on_train_and_val(recipe: Recipe, data: Datasets, epochs: int, device, callbacks, baseline, blend, why: str):
    """(model to save, baseline, facts): a fresh model of the same seed trained on train + val for
    the `epochs` validation chose, with the baseline refitted at its chosen C and blended in at
    the chosen weight. Not checkpointed: a run killed here resumes into the refit again."""
    import dataclasses
    import time

    from attn.models.linear import Blend

    from .baseline import fit_baseline
    from .init_model import init_model
    from .trainer import Trainer

    t0 = time.perf_counter()
    both = dataclasses.replace(data, train=data.train.merged(data.val))
    log.info("refit: %s; training again on train + val (%d examples) for %d epoch%s", why, len(both.train), epochs,
             "" if epochs == 1 else "s")  # fmt: skip
    model, _ = init_model(recipe, both, device)
    cfg = recipe.train.model_copy(update={"epochs": epochs, "patience": 0})
    trainer = Trainer(model, cfg, both.train, None, list(data.labels), device, callbacks)
    trainer.fit()
    trainer.load_last()  # without validation to choose, the epoch count validation chose decides
    network = trainer.model.eval()
    if baseline is not None:
        first = baseline
        baseline = fit_baseline(recipe, both, device, c=first.C, thresholds=first.thresholds, score_on=("test",))
        if "val" in first.scores:  # validation's figure is the first phase's, when val was held out
            baseline.scores["val"] = first.scores["val"]
    final = network
    if baseline is not None:
        final = Blend(network, baseline.module, (blend or {}).get("weight", 0.0), baseline.summary()).eval()
    facts = {"epochs": epochs, "examples": len(both.train), "why": why, "seconds": round(time.perf_counter() - t0, 1)}
    return final, baseline, facts
