"""Several processes (GPUs or hosts) through torchrun and torch.distributed, never a home-made
engine:

    torchrun --nproc_per_node=4 -m attn.cli train recipes/genre.yaml

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `attn train` then joins the process group (NCCL
on CUDA, Gloo on CPU), each process trains on its own shard of every epoch's examples
(`train.batch_size` per process) and DistributedDataParallel averages the gradients. Rank 0
alone writes the run directory; after every epoch the ranks take rank 0's buffers (batch-norm
statistics) and its validation report, so their early-stopping decisions agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from attn.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The torchrun environment, or a world of one."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e})") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"RANK {rank} with WORLD_SIZE {size}: torchrun numbers processes 0 to WORLD_SIZE - 1 "
                          "(unset these variables outside torchrun)")  # fmt: skip
    return World(rank, size, local)


def join(world: World, device_spec: str | None):
    """Join the process group; returns this process's torch.device. `--device auto|cuda` maps
    to cuda:LOCAL_RANK (one GPU per process); `cpu` uses Gloo."""
    import torch
    import torch.distributed as dist

    from ..device import resolve_device

    dev = resolve_device(device_spec)
    if dev.type == "cuda":
        if (device_spec or "auto").strip().lower() not in ("auto", "cuda"):
            raise ConfigError(f"--device {device_spec}: under torchrun each process uses cuda:LOCAL_RANK; "
                              "pass --device cuda (or auto)")  # fmt: skip
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {world.local_rank}: only {torch.cuda.device_count()} CUDA device(s)")
        dev = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=world.rank, world_size=world.size)
        except ValueError as e:  # WORLD_SIZE set outside torchrun: MASTER_ADDR missing (was an internal error)
            raise ConfigError(f"WORLD_SIZE={world.size} asks for several processes, but they cannot meet ({e}); "
                              "start them with torchrun, or unset WORLD_SIZE and RANK") from None  # fmt: skip
    return dev


def resume_command(run_dir, processes: int) -> str:
    """How to resume a run of `processes` processes (one host: its torchrun line)."""
    if processes <= 1:
        return f"attn train --resume {run_dir}"
    return f"torchrun --nproc_per_node {processes} -m attn.cli train --resume {run_dir} (the same processes)"


def broadcast_text(text: str | None, world: World) -> str:
    """Rank 0's string (e.g. the run directory it created), on every rank."""
    return broadcast_object(text)


def broadcast_object(obj):
    """Rank 0's value (plain data: a string, a metrics dict), on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)  # between our own processes: trusted, never from a file
    return box[0]


def barrier(world: World) -> None:
    """Every rank waits here for the others (rank 0 writing files the others read next)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
