"""The resume checkpoint (last.ckpt): everything that decides the next epoch, written after a
finished epoch (every one, or every few short ones: train/epoch_saver.EpochSaver), in the same
container as the model artifact (kind "checkpoint").

Header: kind, the resolved recipe, the labels, the epoch, the tokenizer's state (text); tensors:
`Trainer.state_dict()` (weights, optimizer, RNG, early stopping) and the tokenizer's blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attn.errors import ArtifactError

from ..recipe.config import Recipe
from .container import read_container, stored_recipe, write_container


@dataclass(frozen=True)
class Checkpoint:
    recipe: Recipe
    labels: list[str]
    epoch: int  # finished epochs
    state: dict[str, Any]  # for Trainer.load_state_dict
    tokenizer: Any = None  # text: the tokenizer the run fitted
    data: str | None = None  # data.fingerprint of what it trains on (None: a checkpoint from before it)


class CheckpointWriter:
    """Writes one run's checkpoint; the recipe and tokenizer parts are computed once."""

    def __init__(self, path: Path, recipe: Recipe, labels: list[str], tokenizer=None, data: str | None = None) -> None:
        from ..data.text import tokenizer_state
        from ..recipe.load import recipe_to_dict

        self.path = path
        self.plain_recipe = recipe_to_dict(recipe)  # also the run's model files' (train/epoch_saver.EpochSaver)
        self.header = {"kind": "checkpoint", "recipe": self.plain_recipe, "labels": list(labels), "data": data}
        self.tok_header, self.tok_tensors = tokenizer_state(tokenizer) if tokenizer is not None else (None, {})

    def write(self, epoch: int, trainer_state: dict[str, Any]) -> None:
        # the thread count in the header too: an ensemble's resume reads it from a member's, header only
        threads = (trainer_state.get("state") or {}).get("threads")
        header = {**self.header, "epoch": epoch, "tokenizer": self.tok_header, "threads": threads}
        write_container(self.path, header, {**trainer_state, **self.tok_tensors})


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint; an ArtifactError names what is wrong with it."""
    box = read_container(path, what="checkpoint")
    header = box.header
    if header.get("kind") != "checkpoint":
        raise ArtifactError(f"{path}: not a training checkpoint")
    recipe, labels = stored_recipe(header, path, "checkpoint")
    state = box.tensors()
    tokenizer = None
    if header.get("tokenizer") is not None:
        from ..data.text import tokenizer_from_artifact

        tokenizer = tokenizer_from_artifact(recipe, header, state)
    return Checkpoint(recipe, labels, int(header.get("epoch", 0)), state, tokenizer, header.get("data"))
