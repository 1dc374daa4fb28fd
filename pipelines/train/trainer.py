"""The training loop: nothing in it is about audio, text or a model family.

AdamW (no decay on biases and norms), linear warmup then cosine decay per step, gradient
clipping, AMP on CUDA, early stopping on a validation metric. Everything that decides the next
epoch (weights, optimizer, schedule, RNG, early-stopping state) is in `state_dict()`, taken at
epoch boundaries, so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from attn.errors import ConfigError, TrainingError

from ..data.batching import WindowSet, length_bucketed
from ..fsutil import stop_if_requested
from ..infer.evaluate import evaluation_report
from ..infer.inference import window_logits
from ..recipe.config import TrainConfig
from .callbacks import CallbackList, Callbacks
from .distributed import World
from .loss import class_weights, training_loss
from .optim import adamw, lr_factor

log = logging.getLogger("attn")


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    best_key: list[float] | None = None  # larger is better
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    done: bool = False
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    processes: int = 1  # torchrun's world size: each process takes batch_size, so it is the run's batch too
    threads: int | None = None  # torch's CPU threads (None: on a GPU): float sums, so the weights, depend on it


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        train_set: WindowSet,
        val_set: WindowSet | None,
        labels: list[str],
        device: torch.device,
        callbacks: Callbacks | None = None,
        world: World = World(),
    ) -> None:
        self.model = model.to(device)
        self.world = world
        self.cfg = cfg
        self.train_set = train_set
        self.val_set = val_set if val_set is not None and len(val_set) else None
        self.labels = labels
        self.device = device
        self.cb = CallbackList(callbacks)
        self.amp_dtype = None
        if device.type == "cuda" and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.opt = adamw(model, cfg)
        self.multi_label = train_set.multi_label
        if self.multi_label:
            from ..data.labelsets import warn_no_positives

            warn_no_positives(train_set.labels, labels)
        elif cfg.augment.mix_union:
            raise ConfigError("train.augment.mix_union is for multi-label data (data.multi_label: true): a "
                              "single-label example cannot hold the union of two labels; use mixup")  # fmt: skip
        self.class_weights = class_weights(train_set, len(labels), device) if cfg.class_weights == "balanced" else None
        self.steps_per_epoch = math.ceil(self._epoch_size() // world.size / cfg.batch_size)
        if world.distributed and self.steps_per_epoch == 0:  # it "trained" 0 steps, printed loss 0.0000, exit 0
            raise ConfigError(f"{self._epoch_size()} training example(s) for {world.size} processes: each process "
                              "trains on its own share of every epoch and needs one; run fewer processes")  # fmt: skip
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = int(cfg.warmup * self.total_steps)
        self.state = TrainState(processes=world.size,
                                threads=torch.get_num_threads() if device.type == "cpu" else None)  # fmt: skip
        self.saved_epoch: int | None = None  # the epoch on disk, when a saver (train/epoch_saver.EpochSaver) keeps one
        self.train_accuracy = 0.0  # of the last epoch trained
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.ema: dict[str, torch.Tensor] | None = None
        self._ema_pairs = None
        self._param_names = {n for n, _ in model.named_parameters()}
        self.forward = _training_forward(self.model, cfg, world, device)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, mix, union=None) -> torch.Tensor:
        return training_loss(logits, y, mix, self.class_weights, self.cfg.label_smoothing, self.multi_label, union)

    def _mixup(self, b: int):
        """((lam (B,), perm (B,)), union (B,) bool or None) on the device for this batch, or
        (None, None) when neither train.augment.mixup nor mix_union is on. Row i becomes
        lam_i x_i + (1 - lam_i) x_perm(i). mixup: lam ~ Beta(a, a). mix_union rows (multi-label):
        the two at 0 to -6 dB each, so lam in [1/3, 2/3], and their labels unioned (`union`).
        Rows left alone get lam 1 and themselves as partner. Drawn from the global torch RNG
        (kept in checkpoints)."""
        alpha, share = self.cfg.augment.mixup, self.cfg.augment.mix_union
        if not (alpha or share) or b < 2:
            return None, None
        lam = torch.distributions.Beta(alpha, alpha).sample((b,)) if alpha else torch.ones(b)
        perm = torch.randperm(b)
        union = None
        if share:
            union = torch.rand(b) < share
            amp = 10 ** (-6 * torch.rand(2, b) / 20)  # (2, B) each source's gain, 0 to -6 dB
            lam = torch.where(union, amp[0] / amp.sum(0), lam)
            if not alpha:  # rows neither mixed nor unioned stay as they are
                perm = torch.where(union, perm, torch.arange(b))
            union = union.to(self.device)
        return (lam.to(self.device), perm.to(self.device)), union

    def _epoch_size(self) -> int:
        return len(self.train_set) if self.cfg.windows == "random" else self.train_set.num_windows

    # -- one epoch ------------------------------------------------------------------------------

    def _epoch_windows(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        # Data order and window offsets depend only on (seed, epoch): resuming at an epoch
        # boundary replays exactly what the uninterrupted run would have seen.
        gen = np.random.default_rng([self.cfg.seed, epoch, 0x5EED])
        ws = self.train_set
        windows = ws.random_windows(gen) if self.cfg.windows == "random" else ws.all_windows
        order = gen.permutation(len(windows))
        if self.cfg.length_buckets and not self.world.distributed:
            order = length_bucketed(order, windows[:, 2], self.cfg.batch_size, gen)
        if self.world.distributed:
            # Rank r takes every size-th example: batch i of all ranks together is batch i of
            # one process with size x the batch. Every rank gets the same number of steps.
            w = self.world
            order = order[: len(order) - len(order) % w.size][w.rank :: w.size]
        return windows, order

    def train_epoch(self, epoch: int) -> float:
        cfg, model = self.cfg, self.model
        model.train()
        windows, order = self._epoch_windows(epoch)
        self.cb.on_epoch_begin(epoch + 1, cfg.epochs, self.steps_per_epoch)
        total, count = 0.0, 0
        correct = torch.zeros((), dtype=torch.int64, device=self.device)  # summed on device: no sync per step
        pin = self.device.type == "cuda"
        for i, batch in enumerate(self.train_set.batches(windows, cfg.batch_size, order)):
            stop_if_requested()  # a SIGTERM whose KeyboardInterrupt some library swallowed still stops here
            if pin:
                batch = batch.pin_memory()
            batch = batch.to(self.device, non_blocking=pin)
            scale = lr_factor(self.state.step, self.total_steps, self.warmup_steps, cfg.schedule)
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr * group["lr_scale"] * scale
            mix, union = self._mixup(len(batch.y))
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                if mix is None:
                    logits = self.forward(batch.x, batch.lengths)
                else:
                    logits = self.forward(batch.x, batch.lengths, mix)
            loss = self._loss(logits.float(), batch.y, mix, union)
            value = self._global_mean(loss.detach())
            if not math.isfinite(value):
                # In the first epoch nothing was saved (and `attn train` removes the run folder).
                saved = epoch if self.saved_epoch is None else self.saved_epoch
                kept = f"the checkpoint of epoch {saved} is kept" if saved else "no epoch finished, so nothing is kept"
                raise TrainingError(
                    f"training diverged: loss is {value} at epoch {epoch + 1}, step {i + 1} "
                    f"(global step {self.state.step + 1}); lower train.lr or check the data. "
                    f"Stopped without saving this epoch; {kept}"
                )
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.state.step += 1
            if cfg.ema:
                self._update_ema()
            total += value * len(batch.y)
            count += len(batch.y)
            if self.multi_label:  # exact-set match at 0.5
                correct += ((logits.detach() >= 0) == (batch.y >= 0.5)).all(-1).sum()
            else:
                correct += (logits.detach().argmax(-1) == batch.y).sum()
            self.cb.on_step(i + 1, value)
        # Running accuracy on the epoch's training windows (augmented, in training mode), for the
        # learning curves; every rank has as many examples, so the mean over ranks is the total's.
        self.train_accuracy = self._global_mean(correct.float() / max(1, count))
        return total / max(1, count)

    def _global_mean(self, loss: torch.Tensor) -> float:
        """The step's loss averaged over processes: every rank sees the same value, so a NaN on
        one stops them all together (one rank stopping alone would leave the others waiting)."""
        if self.world.distributed:
            import torch.distributed as dist

            loss = loss.clone()
            dist.all_reduce(loss)
            loss /= self.world.size
        return float(loss)

    def _same_buffers(self) -> None:
        """Under torchrun, rank 0's buffers on every rank. Each rank's training steps update its
        batch-norm running statistics from its own batches (DDP sends rank 0's only at the next
        forward), so the ranks evaluated different models: validation scores differed (0.6417 vs
        0.65), one rank stopped early while another trained on, and a finished run ended in a
        peer's "Connection closed" error, exit 1."""
        if self.world.distributed:
            import torch.distributed as dist

            for b in self.model.buffers():
                dist.broadcast(b, src=0)
            for k, v in (self.ema or {}).items():  # the averaged model's buffers, copied from each rank's own
                if k not in self._param_names:
                    dist.broadcast(v, src=0)

    def _rank0s(self, rep: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's validation report on every rank: the early-stopping decisions agree even if
        a float sum came out otherwise on another rank."""
        if not self.world.distributed:
            return rep
        from .distributed import broadcast_object

        return broadcast_object(rep)

    def evaluate(self, ws: WindowSet, aggregate_how: str = "mean") -> dict[str, Any]:
        """Window loss, clip-level metrics (window probabilities averaged per clip) and, when
        clips have several windows, window-level accuracy. Uses the averaged weights with ema."""
        with self._averaged():
            logits = window_logits(self.model, ws, self.device, amp=self.amp_dtype is not None)
        return evaluation_report(logits, ws, self.labels, aggregate_how)

    # -- weight averaging -----------------------------------------------------------------------

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Early on the average follows the weights closely ((1+n)/(10+n)); later it uses the
        # configured decay. Buffers (batch-norm statistics) are copied as they are. One fused
        # lerp over all parameters: a per-tensor loop cost ~8% of a small text model's step.
        decay = min(self.cfg.ema, (1 + self.state.step) / (10 + self.state.step))
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self._ema_pairs is None:
            live = self.model.state_dict()
            params = [k for k in live if k in self._param_names and live[k].is_floating_point()]
            self._ema_pairs = (
                [self.ema[k] for k in params], [live[k] for k in params],
                [(self.ema[k], live[k]) for k in live if k not in params],
            )  # fmt: skip
        ema_p, live_p, bufs = self._ema_pairs
        torch._foreach_lerp_(ema_p, live_p, 1 - decay)
        for e, v in bufs:
            e.copy_(v)

    @contextlib.contextmanager
    def _averaged(self):
        if self.ema is None:
            yield
            return
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            yield
        finally:
            self.model.load_state_dict(current)

    def _weights(self) -> dict[str, torch.Tensor]:
        src = self.ema if self.ema is not None else self.model.state_dict()
        return {k: v.detach().to("cpu", copy=True) for k, v in src.items()}

    # -- the loop -------------------------------------------------------------------------------

    def _key(self, record: dict[str, Any]) -> list[float]:
        """Larger is better; ties on accuracy/F1 go to the lower validation loss."""
        if self.val_set is None:
            return [-record["train_loss"]]
        if self.cfg.monitor == "val_loss":
            return [-record["val_loss"]]
        return [record[self.cfg.monitor], -record["val_loss"]]

    def fit(self, on_epoch_saved=None) -> TrainState:
        """Train until `epochs` or early stop. After every epoch `on_epoch_saved(trainer,
        improved)` runs (the run writes its checkpoint and artifact there)."""
        st, cfg = self.state, self.cfg
        while st.epoch < cfg.epochs and not st.done:
            t0 = time.perf_counter()
            epoch = st.epoch
            train_loss = self.train_epoch(epoch)
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                                      "train_accuracy": round(self.train_accuracy, 6)}  # fmt: skip
            self._same_buffers()
            if self.val_set is not None:
                rep = self._rank0s(self.evaluate(self.val_set))
                record.update(
                    val_loss=round(rep["loss"], 6),
                    val_accuracy=round(rep["accuracy"], 6),
                    val_macro_f1=round(rep["macro_f1"], 6),
                )
            record["lr"] = self.opt.param_groups[0]["lr"]
            record["seconds"] = round(time.perf_counter() - t0, 3)
            key = self._key(record)
            improved = st.best_key is None or key > st.best_key
            if improved:
                st.best_key, st.best_epoch, st.bad_epochs = key, epoch + 1, 0
                self.best_weights = self._weights()
            else:
                st.bad_epochs += 1
            record["best"] = improved
            st.epoch = epoch + 1
            st.seconds += record["seconds"]
            st.history.append(record)
            if cfg.patience and st.bad_epochs >= cfg.patience:
                st.stopped_early = True
                st.done = True
            if st.epoch >= cfg.epochs:
                st.done = True
            self.cb.on_epoch_end(dict(record))
            log.info("epoch %s", _fmt_record(record, cfg.epochs))
            if on_epoch_saved is not None:
                on_epoch_saved(self, improved)
        return st

    def load_best(self) -> None:
        """Make the best epoch's weights (averaged ones with ema) the model's, and what
        `evaluate` uses from now on: otherwise it would swap in the last epoch's average, and
        the reported test metrics would not be those of the saved model."""
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
            self.ema, self._ema_pairs = None, None

    def load_last(self) -> None:
        """Make the last epoch's weights (averaged ones with ema) the model's: a run with no
        validation to choose an epoch (a refit on train + val) keeps what it ended with."""
        self.model.load_state_dict(self._weights())
        self.ema, self._ema_pairs = None, None

    # -- resume state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "best_weights": self.best_weights,
            "ema": None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.items()},
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "state": _plain(asdict(self.state)),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.model.load_state_dict(sd["model"])
        self.best_weights = sd.get("best_weights")
        ema = sd.get("ema")
        self.ema = None if ema is None else {k: v.to(self.device) for k, v in ema.items()}
        self._ema_pairs = None
        self.opt.load_state_dict(sd["optimizer"])
        if sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
        torch.set_rng_state(sd["rng"]["torch"])
        if "cuda" in sd["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(sd["rng"]["cuda"])
        self.state = TrainState(**sd["state"])


def _training_forward(model: torch.nn.Module, cfg: TrainConfig, world: World, device: torch.device):
    """What the training step calls: the model, under torchrun wrapped in DistributedDataParallel,
    with train.compile compiled. Only the training forward is: evaluation, checkpoints and the
    artifact use the plain module (its state_dict keys are unchanged)."""
    forward = model
    if world.distributed:
        # Gradients are averaged across processes in backward; parameters and buffers start
        # from rank 0's, so every rank holds the same weights after every step.
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        forward = torch.compile(forward, dynamic=True)  # dynamic=True: batch widths vary
    return forward


def _fmt_record(r: dict[str, Any], epochs: int) -> str:
    parts = [f"{r['epoch']}/{epochs}", f"train_loss={r['train_loss']:.4f}"]
    for k in ("val_loss", "val_accuracy", "val_macro_f1"):
        if k in r:
            parts.append(f"{k}={r[k]:.4f}")
    parts.append(f"lr={r['lr']:.2e}")
    parts.append(f"{r['seconds']:.1f}s")
    if r.get("best"):
        parts.append("*")
    return " ".join(parts)


def _plain(x: Any) -> Any:
    """Deep copy as plain Python data (what `torch.load(weights_only=True)` accepts)."""
    return copy.deepcopy(x)
