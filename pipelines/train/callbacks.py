"""Hooks into training: what the CLI's progress bars, a tuner and TensorBoard logging attach to."""

from __future__ import annotations

from typing import Any


class Callbacks:
    """Hooks into training (the CLI draws progress bars with them; a tuner reads each epoch's
    validation metrics in `on_epoch_end`). Every hook is optional: an object with only some of
    these methods works. An exception raised in a hook stops training; the checkpoint of the
    last saved epoch is kept. The library itself never prints."""

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, loss: float) -> None: ...
    def on_epoch_end(self, record: dict[str, Any]) -> None: ...
    def on_train_end(self, metrics: dict[str, Any] | None) -> None:
        """After the run: its final metrics (metrics.json; None without test or validation data)."""


class CallbackList(Callbacks):
    """Callback objects called in order, each with the hooks it has."""

    def __init__(self, *callbacks) -> None:
        flat = []
        for c in callbacks:  # a list or tuple of them (`attn.train(callbacks=[a, b])`) is each of them
            flat += list(c) if isinstance(c, (list, tuple)) else [c]
        self.callbacks = [c for c in flat if c is not None]

    def _call(self, hook: str, *args) -> None:
        for c in self.callbacks:
            fn = getattr(c, hook, None)
            if fn is not None:
                fn(*args)

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        self._call("on_epoch_begin", epoch, epochs, steps)

    def on_step(self, step: int, loss: float) -> None:
        self._call("on_step", step, loss)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self._call("on_epoch_end", record)

    def on_train_end(self, metrics: dict[str, Any] | None) -> None:
        self._call("on_train_end", metrics)
