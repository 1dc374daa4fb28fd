"""`attn train`: a recipe in, a run directory out.

runs/<recipe>-<timestamp>/
    model.attn      the artifact (best validation epoch), all `attn predict` needs
    last.ckpt       resume state after the last finished epoch (optimizer, RNG, ...)
    recipe.yaml     the resolved recipe
    history.jsonl   one line of metrics per epoch
    metrics.json    final test metrics
    train.log       the log
runs/latest -> the newest run
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError, ConfigError, InputError, Interrupted

from .config import Recipe
from .distributed import World, broadcast_text, join, leave, world_from_env
from .fsutil import append_line, atomic_write_text, make_dirs

log = logging.getLogger("attn")

CHECKPOINT = "last.ckpt"
MODEL = "model.attn"


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    labels: list[str]
    parameters: int
    data: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)  # train.ensemble: one entry per member

    def summary(self) -> dict[str, Any]:
        m = self.metrics or {}
        return {
            "run_dir": str(self.run_dir),
            "model": str(self.model_path),
            "test_accuracy": m.get("accuracy"),
            "test_macro_f1": m.get("macro_f1"),
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_run,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.seconds, 1),
            "parameters": self.parameters,
            "labels": self.labels,
            "data": self.data,
            **({"members": self.members} if self.members else {}),
        }


def new_run_dir(recipe_path: str | None, out: str | None) -> Path:
    """A fresh run directory; two runs started in the same second never share one."""
    if out:
        p = Path(out)
        if p.exists() and any(p.iterdir()):
            raise ConfigError(f"--out {out}: directory exists and is not empty (use --resume {out} to continue it)")
        make_dirs(p)
        return p
    stem = Path(recipe_path).stem if recipe_path else "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    make_dirs("runs")
    for i in range(1000):
        p = Path("runs") / (f"{stem}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            p.mkdir()  # atomic: fails if another run took the name
            return p
        except FileExistsError:
            continue
        except OSError as e:
            make_dirs(p)  # raises an OutputError naming the problem
            raise AssertionError from e
    raise ConfigError("runs/: could not find a free run directory name")


def _point_latest(run_dir: Path) -> None:
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError as e:
        log.warning("could not update %s (%s)", link, e.strerror or e)


class _RunLog:
    """Copy the 'attn' log into the run's train.log while the run is active."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger = logging.getLogger("attn")
        self.old_level = self.logger.level

    def __enter__(self):
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
            self.handler.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        self.handler.close()


def train(
    recipe: Recipe,
    recipe_path: str | None = None,
    out: str | None = None,
    device: str = "auto",
    callbacks=None,
) -> TrainResult:
    """Train the recipe in a new run directory and return what was written."""
    from .recipe import recipe_to_yaml

    world, dev = _devices(device)
    try:
        prepared = _prepare_data(recipe)  # lists items and labels; config errors surface here
        run_dir = None
        if world.main:
            run_dir = new_run_dir(recipe_path, out)
            atomic_write_text(run_dir / "recipe.yaml", recipe_to_yaml(recipe))
        if world.distributed:
            run_dir = Path(broadcast_text(None if run_dir is None else str(run_dir), world))
        assert run_dir is not None
        with _RunLog(run_dir / "train.log") if world.main else contextlib.nullcontext():
            log.info("run directory %s", run_dir)
            return _run(recipe, run_dir, dev, callbacks, prepared, resume_state=None, world=world)
    finally:
        leave()


def _devices(device: str):
    """(World, torch.device): joins the process group under torchrun."""
    from .device import resolve_device

    world = world_from_env()
    return world, (join(world, device) if world.distributed else resolve_device(device))


def resume(run_dir: str, device: str = "auto", callbacks=None) -> TrainResult:
    """Continue an interrupted run from its last finished epoch."""
    from .container import read_container
    from .recipe import recipe_from_dict

    rd = Path(run_dir)
    if rd.is_file():
        rd = rd.parent
    from .train_ensemble import MEMBERS

    box = None
    if (rd / MEMBERS).exists():  # an ensemble: its state names the recipe and the members done
        try:
            header = json.loads((rd / MEMBERS).read_text(encoding="utf-8"))
            recipe = recipe_from_dict(header["recipe"], source=f"{rd / MEMBERS} (stored recipe)")
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{rd / MEMBERS}: unreadable ensemble state ({e})") from None
        where = f"after {len(header['members'])} of {recipe.train.ensemble} ensemble members"
    elif (rd.parent / MEMBERS).exists():
        raise ConfigError(f"{rd} is a member of the ensemble run {rd.parent}: attn train --resume {rd.parent}")
    else:
        ckpt = rd / CHECKPOINT
        if not ckpt.exists():
            raise ConfigError(f"{rd}: no {CHECKPOINT} to resume from (was the first epoch finished?)")
        box = read_container(ckpt)
        header = box.header
        if header.get("kind") != "checkpoint":
            raise ArtifactError(f"{ckpt}: not a training checkpoint")
        recipe = recipe_from_dict(header["recipe"], source=f"{ckpt} (stored recipe)")
        where = f"from epoch {header.get('epoch', 0)}"
    world, dev = _devices(device)
    try:
        prepared = _prepare_data(recipe)
        if prepared["labels"] != header["labels"]:
            raise InputError(f"{rd}: the data's labels changed since the run started; cannot resume")
        state = None
        if box is not None:
            state = box.tensors()
            if header.get("tokenizer") is not None:
                from .text import tokenizer_from_artifact

                prepared["tokenizer"] = tokenizer_from_artifact(recipe, header, state)
        with _RunLog(rd / "train.log") if world.main else contextlib.nullcontext():
            log.info("resuming %s %s", rd, where)
            return _run(recipe, rd, dev, callbacks, prepared, resume_state=state, world=world)
    finally:
        leave()


def _prepare_data(recipe: Recipe) -> dict[str, Any]:
    from .sources import collect_labels, list_items, split_items

    if recipe.train.pretrain_epochs:
        if recipe.modality != "text":
            raise ConfigError("train.pretrain_epochs is for text models (masked-token pretraining)")
        if not recipe.model.family.token_outputs:
            raise ConfigError(f"train.pretrain_epochs needs per-token outputs; model {recipe.model.name!r} has none")

    items = list_items(recipe.data, recipe.modality)
    splits = split_items(items, recipe.data)
    labels = collect_labels(splits)
    if len(labels) < 2:
        raise InputError(f"data: need at least 2 classes to train, found {len(labels)} ({', '.join(labels)})")
    return {"splits": splits, "labels": labels}


def _run(
    recipe, run_dir: Path, dev, callbacks, prepared, resume_state, world: World = World(), point_latest: bool = True
) -> TrainResult:
    import torch

    if recipe.train.ensemble > 1:
        from .train_ensemble import run_ensemble

        return run_ensemble(recipe, run_dir, dev, callbacks, prepared, world)

    from .artifact import save_model
    from .build import build_model, count_parameters
    from .container import write_container
    from .datasets import load_sets
    from .recipe import recipe_to_dict
    from .text import apply_vectors, tokenizer_state
    from .trainer import Trainer

    labels = prepared["labels"]
    sets, data_info, tok = load_sets(recipe, prepared["splits"], labels, prepared.get("tokenizer"))
    torch.manual_seed(recipe.train.seed)
    model = build_model(recipe, len(labels), vocab_size=None if tok is None else tok.vocab_size)
    if tok is not None and recipe.features.tokenizer.vectors and resume_state is None:
        data_info["vectors"] = apply_vectors(model, tok, recipe.features)
    if recipe.train.pretrain_epochs and resume_state is None:
        from .pretrain import pretrain_masked_tokens

        data_info["pretrain"] = pretrain_masked_tokens(model.to(dev), sets["train"], recipe.train, tok.vocab_size, dev)
    trainer = Trainer(model, recipe.train, sets["train"], sets["val"], labels, dev, callbacks, world=world)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    log.info(
        "model %s: %d parameters on %s; %d steps/epoch",
        recipe.model.name,
        count_parameters(model),
        dev,
        trainer.steps_per_epoch,
    )

    tok_header, tok_tensors = tokenizer_state(tok) if tok is not None else (None, {})

    def save(tr: Trainer, improved: bool) -> None:
        if not world.main:
            return
        # Artifact first: if we crash between the two writes, resuming redoes this epoch.
        if improved:
            save_model(run_dir / MODEL, tr.model, recipe, labels, {"epoch": tr.state.epoch}, tokenizer=tok,
                       state_dict=tr.best_weights)  # fmt: skip
        header = {"kind": "checkpoint", "recipe": recipe_to_dict(recipe), "labels": labels, "epoch": tr.state.epoch,
                  "tokenizer": tok_header}  # fmt: skip
        write_container(run_dir / CHECKPOINT, header, {**tr.state_dict(), **tok_tensors})
        append_line(run_dir / "history.jsonl", json.dumps(tr.state.history[-1]))

    if resume_state is not None and world.main:  # history.jsonl may hold a line the checkpoint does not
        atomic_write_text(run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.state.history))
    try:
        st = trainer.fit(save)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during epoch {trainer.state.epoch + 1}; state after epoch {trainer.state.epoch} is saved. "
            f"Resume with: attn train --resume {run_dir}"
        ) from None

    trainer.load_best()
    eval_split = "test" if len(sets["test"]) else ("val" if len(sets["val"]) else None)
    metrics = None
    if not world.main:  # rank 0 evaluates and writes the results
        eval_split = None
    elif eval_split is None:
        log.warning("no test or validation clips: metrics.json not written")
    else:
        if eval_split != "test":
            log.warning("no test clips: reporting metrics on the validation split")
        metrics = trainer.evaluate(sets[eval_split])
        metrics["split"] = eval_split
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        log.info(
            "%s accuracy %.4f, macro-F1 %.4f (%d examples)",
            eval_split,
            metrics["accuracy"],
            metrics["macro_f1"],
            metrics["count"],
        )
    extra = {
        "epoch": st.best_epoch,
        "metrics": None if metrics is None else {k: metrics[k] for k in ("accuracy", "macro_f1", "count", "split")},
        "train": {"epochs_run": st.epoch, "seconds": round(st.seconds, 1), "data": data_info},
    }
    if world.main:
        save_model(run_dir / MODEL, trainer.model, recipe, labels, extra, tokenizer=tok)
        if point_latest:
            _point_latest(run_dir)
    return TrainResult(
        run_dir=run_dir,
        model_path=run_dir / MODEL,
        metrics=metrics,
        history=st.history,
        best_epoch=st.best_epoch,
        epochs_run=st.epoch,
        stopped_early=st.stopped_early,
        seconds=st.seconds,
        labels=labels,
        parameters=count_parameters(model),
        data=data_info,
    )
