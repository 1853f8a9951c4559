"""Admission control and dynamic batching: how requests reach the model.

`Admission` lets a bounded number of requests into decoding and the model and a bounded number
wait for a place; past both the request is turned away at once (the app answers 503 with
``Retry-After``), so that under overload the server answers quickly and keeps its memory.

`Batcher` runs the decoded images of requests that arrive within a few milliseconds of each
other through the model as one batch, in one thread of its own: one forward pass of eight small
images costs little more than one, and the model's thread never competes with itself. Other
work on the model (an explanation) runs in that thread too (`Batcher.call`), between batches,
so that nothing it does to the model is seen by a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


class Busy(Exception):
    """Every place in flight and in the queue of an `Admission` (its one argument) is taken."""


class Admission:
    """At most ``in_flight`` requests inside `slot`, at most ``queue`` waiting to enter."""

    def __init__(self, in_flight: int, queue: int) -> None:
        self.in_flight, self.queue = in_flight, queue
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self.waiters)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A place in flight for the block; `Busy` at once if none is free nor can be waited
        for."""
        if self.active < self.in_flight:
            self.active += 1
        elif len(self.waiters) < self.queue:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter  # `release` hands its place over: `active` stays as it is
            except BaseException:  # cancelled (a timeout, a client gone): give the place on
                if waiter.done() and not waiter.cancelled():
                    self.release()
                else:
                    self.waiters.remove(waiter)
                raise
        else:
            raise Busy(self)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class Batcher:
    """Rows of ``run`` (a function of a uint8 batch (N, C, H, W)), for one image at a time.

    The first image waits up to ``max_wait_s`` for others, or until ``max_batch`` have come;
    images that arrive while a batch is in the model form the next. ``on_batch`` is told each
    batch's size.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], max_batch: int,
                 max_wait_s: float, on_batch: Callable[[int], None] = lambda n: None) -> None:
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.on_batch = on_batch
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="descend-model")
        self.pending: list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]] = []
        self.arrived: asyncio.Event | None = None
        self.worker: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, pixels: torch.Tensor) -> torch.Tensor:
        """``run``'s row for ``pixels`` (C, H, W), computed in a batch with its neighbours."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop or self.worker is None or self.worker.done():
            # One worker per event loop (a test client may run each request in a new one).
            self.loop, self.pending, self.arrived = loop, [], asyncio.Event()
            self.worker = loop.create_task(self.work())
        assert self.arrived is not None
        future: asyncio.Future[torch.Tensor] = loop.create_future()
        self.pending.append((pixels, future))
        self.arrived.set()
        return await future

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        arrived = self.arrived
        assert arrived is not None
        while True:
            await arrived.wait()
            arrived.clear()
            deadline = time.monotonic() + self.max_wait_s
            while self.pending and len(self.pending) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(arrived.wait(), left)
                arrived.clear()
            while self.pending:
                batch = [(p, f) for p, f in self.pending[:self.max_batch] if not f.done()]
                del self.pending[:self.max_batch]
                if batch:
                    await self.run_batch(loop, batch)

    async def run_batch(self, loop: asyncio.AbstractEventLoop,
                        batch: list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]]) -> None:
        self.on_batch(len(batch))
        try:
            rows = await loop.run_in_executor(self.executor, self.run,
                                              torch.stack([p for p, _ in batch]))
        except Exception as e:  # the model's failure is each request's, not the worker's end
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), row in zip(batch, rows):
            if not future.done():
                future.set_result(row)

    async def call(self, work: Callable[[], T]) -> T:
        """``work()`` in the model's thread, after the batches already in it and before those
        yet to come: never beside a batch. An explanation turns fastres's test-time augmentation
        off while it runs and hooks a layer of the model (Grad-CAM): a batch beside it would run
        without its augmentation, and through the hook."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
