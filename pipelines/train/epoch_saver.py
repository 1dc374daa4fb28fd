"""Saving a run while it trains: the artifact and the resume checkpoint after an epoch, as often
as their cost allows (`EpochSaver`, the Trainer's `on_epoch_saved`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from attn.errors import OutputError

from ..fsutil import append_line, atomic_write_text, interrupts_after
from ..recipe.config import Recipe
from ..store.rundir import CHECKPOINT, HISTORY, MODEL

SAVE_SHARE = 0.1  # the most of a run's wall time that saving its epochs may take


class EpochSaver:
    """The Trainer's `on_epoch_saved`: after every epoch, when a save is due, the artifact (when
    the best epoch moved on since the last save) and the resume checkpoint; then its history line
    (so a saved epoch's line is written after it is on disk). Nothing when `write` is False
    (ranks > 0).

    A save is due after the first and the last epoch, and otherwise once the time since the last
    save is 9x what that save took, so saving takes at most ~SAVE_SHARE of the run. Long epochs
    (most runs) are saved after every epoch; short ones every few: a fine-tuned encoder's
    checkpoint (weights, best weights, optimizer) is ~16 bytes a parameter, 360 MB for MiniLM, and
    on a small set writing it after every half-second epoch took 3-4x the training time. A kill
    loses at most that interval; Ctrl-C and `--resume` start from the trainer's `saved_epoch`, exactly.
    Artifact first: after a crash between the two writes, resuming redoes this epoch."""

    def __init__(self, run_dir: Path, recipe: Recipe, labels: list[str], tokenizer=None, write: bool = True,
                 data: str | None = None) -> None:  # fmt: skip
        from ..store.checkpoint import CheckpointWriter

        self.run_dir, self.recipe, self.labels, self.tokenizer, self.write = run_dir, recipe, labels, tokenizer, write
        self.checkpoint = CheckpointWriter(run_dir / CHECKPOINT, recipe, labels, tokenizer, data)
        self._artifact_epoch = 0  # the best epoch model.attn holds
        self._save_seconds, self._saved_at = 0.0, time.monotonic()

    def __call__(self, trainer, improved: bool) -> None:
        from ..store.artifact import save_model

        if not self.write:
            return
        st = trainer.state
        if not self.run_dir.is_dir():  # the writes below would make it again, without its recipe, log or lock
            raise OutputError(f"{self.run_dir}: the run folder was removed or moved while training (after epoch "
                              f"{st.epoch}); stopped, as nothing more can be saved where the run began")  # fmt: skip
        waited = time.monotonic() - self._saved_at
        if not (st.done or not trainer.saved_epoch or waited * SAVE_SHARE >= self._save_seconds * (1 - SAVE_SHARE)):
            append_line(self.run_dir / HISTORY, json.dumps(st.history[-1]))
            return
        t0 = time.monotonic()
        with interrupts_after():  # Ctrl-C here lands after the save: the epoch it names is on disk, or none is
            if st.best_epoch and st.best_epoch != self._artifact_epoch:
                # "unfinished" until the run's final save replaces this file: info and load say so
                save_model(self.run_dir / MODEL, trainer.model, self.recipe, self.labels,
                           {"epoch": st.best_epoch, "unfinished": True},
                           tokenizer=self.tokenizer, state_dict=trainer.best_weights,
                           plain_recipe=self.checkpoint.plain_recipe)  # fmt: skip
                self._artifact_epoch = st.best_epoch
            self.checkpoint.write(st.epoch, trainer.state_dict())
            trainer.saved_epoch, self._saved_at = st.epoch, time.monotonic()  # what Ctrl-C and a divergence name
            self._save_seconds = self._saved_at - t0
            # after the save: a line in history.jsonl means its epoch is on disk
            append_line(self.run_dir / HISTORY, json.dumps(st.history[-1]))

    def rewrite_history(self, history: list[dict[str, Any]]) -> None:
        """On resume: history.jsonl may hold a line the checkpoint does not."""
        if self.write:
            atomic_write_text(self.run_dir / HISTORY, "".join(json.dumps(r) + "\n" for r in history))
