"""Dynamic batching for `attn serve`: requests that arrive close together are scored in one model
call.

Each request becomes a `Job` (its inputs and the options they share). One collector task takes
the first waiting job, then keeps taking jobs until `max_batch` inputs are gathered or `max_wait`
has passed since the first one, and hands the batch to one model thread. While the model runs, the
next batch gathers, so a busy server fills its batches and an idle one answers a lone request
after at most `max_wait`. Everything that touches the model runs on that one thread: the CPU
threads torch was given are not shared between two model calls fighting for the same cores.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BatchInfo:
    """What a job was scored with (a response's "batch" field): the batch's number since the
    server started, the requests and inputs in it, and the seconds the model took."""

    id: int
    requests: int
    items: int
    seconds: float


@dataclass
class Job:
    key: Hashable  # jobs run together only with the same key (the record options)
    items: list
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # the request timed out or went away: skip it if still queued


# run(key, [items of job 1, items of job 2, ...]) -> [records of job 1, records of job 2, ...]
RunFn = Callable[[Hashable, list[list]], list[list[Any]]]


class Batcher:
    """Collect jobs into batches of at most `max_batch` inputs (a job larger than that runs
    alone, never split) and run them on one model thread with `run`. `on_batch(info)` is called
    after each batch (metrics)."""

    def __init__(self, run: RunFn, max_batch: int = 32, max_wait_ms: float = 10.0,
                 on_batch: Callable[[BatchInfo], None] | None = None) -> None:  # fmt: skip
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch {max_batch} must be >= 1 and max_wait_ms {max_wait_ms} >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self.model_thread = ThreadPoolExecutor(1, thread_name_prefix="attn-model")
        self.queue: asyncio.Queue[Job] | None = None
        self.task: asyncio.Task | None = None
        self.ids = itertools.count(1)

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Finish what is queued, then stop (the server stops taking requests before this)."""
        if self.task is not None:
            assert self.queue is not None
            await self.queue.join()
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.model_thread.shutdown(wait=True)

    async def submit(self, key: Hashable, items: list) -> tuple[list[Any], BatchInfo]:
        """Queue one request's inputs; returns its records (in order) and the batch they ran in.
        Cancelling the caller (a timeout) abandons the job if it has not started."""
        assert self.queue is not None, "Batcher.start() first"
        job = Job(key, items, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(job)
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the model thread, between batches (explain: one request, not batched)."""
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn)

    async def _collect(self) -> None:
        assert self.queue is not None
        held: Job | None = None  # a job of another key taken while gathering: it opens the next batch
        while True:
            first = held or await self.queue.get()
            held = None
            batch, n = [first], len(first.items)
            deadline = time.perf_counter() + self.max_wait
            while n < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    job = self.queue.get_nowait() if left <= 0 else await asyncio.wait_for(self.queue.get(), left)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                if job.key != first.key or n + len(job.items) > self.max_batch:
                    held = job
                    break
                batch.append(job)
                n += len(job.items)
            await self._run(batch)

    async def _run(self, batch: list[Job]) -> None:
        assert self.queue is not None
        live = [j for j in batch if not j.abandoned and not j.future.done()]
        try:
            if live:
                t0 = time.perf_counter()
                try:
                    results = await self.call(lambda: self.run(live[0].key, [j.items for j in live]))
                except Exception as e:  # noqa: BLE001 - the requests get the error; the server goes on
                    for j in live:
                        if not j.future.done():
                            j.future.set_exception(e)
                    return
                info = BatchInfo(next(self.ids), len(live), sum(len(j.items) for j in live),
                                 time.perf_counter() - t0)  # fmt: skip
                if self.on_batch is not None:
                    self.on_batch(info)
                for j, records in zip(live, results, strict=True):
                    if not j.future.done():
                        j.future.set_result((records, info))
        finally:
            for _ in batch:
                self.queue.task_done()
