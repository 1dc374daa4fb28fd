"""Progress display for long work: rich bars on a terminal (stderr), nothing otherwise."""

from __future__ import annotations

from typing import Any


class RichTrainProgress:
    """Trainer callbacks drawing one bar per epoch with the running loss."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        self.total_loss = 0.0
        self.steps = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.total_loss, self.steps = 0.0, 0
        self.task = self.progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}", loss="-")

    def on_step(self, step: int, loss: float) -> None:
        self.total_loss += loss
        self.steps += 1
        self.progress.update(self.task, completed=step, loss=f"{self.total_loss / self.steps:.4f}")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


class RichCounter:
    """A simple counting bar (predict over many files)."""

    def __init__(self, console, total: int, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True
        )
        self.total = total

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task("", total=self.total)
        return self

    def advance(self) -> None:
        self.progress.advance(self.task)

    def __exit__(self, *exc) -> None:
        self.progress.stop()
