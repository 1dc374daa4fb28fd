"""TensorBoard logging as a training callback (`train.tensorboard: true`, or `attn train
--tensorboard DIR`): per epoch the losses, accuracies, macro-F1 and learning rate; at the end the
confusion matrix image and the recipe as hyperparameters beside the final metrics.

Written through `torch.utils.tensorboard`, which needs the `tensorboard` package (the
`attn[tensorboard]` extra). Only rank 0 of a torchrun job creates one. An ensemble's members
each log into DIR/member-<i>; the ensemble's own confusion matrix and hparams go into DIR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attn.errors import ConfigError

from ..store.rundir import MEMBERS

SCALARS = {  # history record key -> TensorBoard tag
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "val_macro_f1": "macro_f1/val",
    "lr": "learning_rate",
    "seconds": "seconds_per_epoch",
}


def summary_writer(log_dir: Path):
    check_package()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


class TensorBoardCallback:
    """Training hooks (see `attn.pipelines.train.callbacks.Callbacks`) that write TensorBoard event files
    into `log_dir`. `recipe` is logged as hparams; `run_dir` tells a resumed ensemble how many
    members are already done."""

    def __init__(self, log_dir: str | Path, recipe, run_dir: Path | None = None) -> None:
        from ..recipe.load import recipe_to_dict

        self.dir = Path(log_dir)
        self.ensemble = recipe.train.ensemble > 1
        self.hparams = flat_hparams(recipe_to_dict(recipe))
        check_package()  # before training starts, not after its first epoch
        self.member = _members_done(run_dir)
        self.writer = None if self.ensemble else summary_writer(self.dir)
        self.last_epoch = 0

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        # An ensemble trains its members one after the other, each from epoch 1.
        if self.ensemble and (self.writer is None or epoch == 1):
            if self.writer is not None:
                self.writer.close()
            self.member += 1
            self.writer = summary_writer(self.dir / f"member-{self.member}")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record["epoch"])
        for key, tag in SCALARS.items():
            if record.get(key) is not None:
                self.writer.add_scalar(tag, float(record[key]), step)
        self.writer.flush()
        self.last_epoch = step

    def on_train_end(self, metrics: dict[str, Any] | None) -> None:
        """The run's final metrics (metrics.json): confusion matrix image and hparams."""
        from torch.utils.tensorboard.summary import hparams

        from ..infer import plots

        if self.ensemble:  # the ensemble's own results, beside its members' folders
            if self.writer is not None:
                self.writer.close()
            self.writer = summary_writer(self.dir)
        if metrics:
            split = metrics.get("split", "test")
            with plots.literal_text():  # add_figure draws the figure itself: labels as written
                fig = plots.confusion_figure(metrics["confusion"], metrics["labels"])
                self.writer.add_figure(f"confusion/{split}", fig, self.last_epoch)
            final = {f"hparam/{split}_{k}": float(metrics[k]) for k in ("accuracy", "macro_f1")}
            for part in hparams(self.hparams, final):
                self.writer.file_writer.add_summary(part)
            for tag, value in final.items():
                self.writer.add_scalar(tag, value, self.last_epoch)
        self.writer.close()
        self.writer = None


def flat_hparams(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested recipe as TensorBoard hparams: dotted keys, values bool/int/float/str (lists and
    None as text)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_hparams(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def _members_done(run_dir: Path | None) -> int:
    import json

    if run_dir is None or not (run_dir / MEMBERS).exists():
        return 0
    try:
        return len(json.loads((run_dir / MEMBERS).read_text(encoding="utf-8")).get("members", []))
    except (OSError, ValueError):
        return 0


def check_package() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(
            "TensorBoard logging needs the tensorboard package: pip install 'attn[tensorboard]'"
        ) from None
