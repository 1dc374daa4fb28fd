"""Progress display for long work: rich bars on a terminal (stderr), nothing otherwise.

Every bar is drawn with `redirect_stdout=False`: rich's default captures what the command
writes to sys.stdout while the bar is up and prints it on the bar's console (stderr), so
`attn predict many/ > out.jsonl` from a terminal left out.jsonl empty."""

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
            redirect_stdout=False,
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
            TextColumn(what),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
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


class RichTuneProgress:
    """`attn tune` on a terminal: a status line (trials done of requested, pruned and failed, the
    best so far, time left) above the running trial's epoch bar (trials run in this process)."""

    def __init__(self, console) -> None:
        from rich.console import Group
        from rich.live import Live

        self.trainer = RichTrainProgress(console)  # drawn inside our Live, not started itself
        self.status: dict[str, Any] | None = None
        self.since = 0.0
        self.live = Live(Group(self, self.trainer.progress), console=console, transient=True, refresh_per_second=4,
                         redirect_stdout=False)  # fmt: skip

    def __rich__(self) -> str:
        import time

        s = self.status
        if s is None:
            return "starting"
        now = time.monotonic() - self.since  # the clocks move between status reports
        best = "-" if s["best"] is None else f"{s['best']['value']:.4f} (trial {s['best']['number']})"
        running = f", {s['running']} running" if s["running"] else ""
        left = "" if s["left"] is None else f" · {_clock(max(0.0, s['left'] - now))} left"
        of = "" if s["requested"] is None else f"/{s['requested']}"
        return (f"trials {s['done']}{of} ({s['pruned']} pruned, {s['failed']} failed{running}) · "
                f"best {s['metric']} {best} · {_clock(s['elapsed'] + now)} elapsed{left}")  # fmt: skip

    def __enter__(self):
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def on_status(self, s: dict[str, Any]) -> None:
        import time

        self.status, self.since = s, time.monotonic()

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        self.trainer.on_epoch_begin(epoch, epochs, steps)

    def on_step(self, step: int, loss: float) -> None:
        self.trainer.on_step(step, loss)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.trainer.on_epoch_end(record)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
