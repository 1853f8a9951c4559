"""Training on several processes: ``torchrun --nproc-per-node N -m descend train ...``.

torchrun starts N copies of ``descend train`` with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
set; `descend.training.trainer.train` then runs inside `process_group` (gloo for a CPU run,
nccl for CUDA, one GPU per local rank) and trains the model wrapped in
`DistributedDataParallel`, which averages the gradients of all ranks at every step. Without
those variables (one process, the usual case) every function here is a no-op and a run is
exactly what it always was.

What a torchrun run means, and why:

* ``--batch-size`` is the global batch: each of N ranks takes batch-size / N images per step
  (`rank_options`). torchvision's reference scripts and Lightning both read it per process
  instead; here a run's recipe (batch, the learning rate that the linear scaling rule derives
  from it, steps per epoch, the schedule's length) is the same whatever the number of
  processes, so ``--lr`` and the defaults keep their meaning, the stored config says what the
  run did, and a run can even be resumed on another number of processes. ``--eval-batch-size``
  is per process: it changes memory, never a metric.
* Data: every epoch all ranks draw the same permutation (from (seed, epoch), as in one
  process) and each takes a disjoint share of it, the same size on every rank, so that all take
  the same number of steps (`descend.data.batching.shard_permutation`); each augments with its
  own stream, from (seed, epoch, rank), so a resumed run replays it.
* Validation and test: each rank evaluates a contiguous block of the split and the loss sums,
  correct counts and image counts are summed over the ranks (`sum_over_ranks`), as are the
  training sums of an epoch: every metric is the one a single process would report over the
  same images.
* Rank 0 owns the run folder (`open_run_folder`: it creates and locks it, the others never
  touch it) and alone prints, logs and writes: the callbacks marked ``rank_zero_only``
  (checkpoints, metrics, TensorBoard, progress) run on rank 0 only (`rank_callbacks`).
  Checkpoints hold the unwrapped model's weights, so they load in one process.
* `RankSync` keeps the ranks in step: before each evaluation every rank takes rank 0's weights
  and buffers (so all evaluate, and rank 0 saves, one model), every rank stops when rank 0
  stops (early stopping, a time budget), and at the end every rank takes rank 0's best weights.
* BatchNorm: each rank normalizes with its own batch's statistics (no SyncBatchNorm: gloo on the
  CPU lacks it, and per-rank batches of a few dozen images are the usual DDP trade-off).
  ``broadcast_buffers`` is off: the running statistics matter only in evaluation, where
  `RankSync` makes them rank 0's, and without the per-step broadcast an evaluation pass holds
  no collective, so ranks with different numbers of evaluation batches never wait on each
  other. The weight EMA runs on every rank; rank 0's is the one evaluated and saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from descend.data.batching import LoaderOptions
from descend.errors import ConfigError, DescendError
from descend.runtime.device import pick_device
from descend.training.keeping.run_folder import RunFolder

if TYPE_CHECKING:
    pass

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: ``World()`` is one process alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank on this machine: which GPU a CUDA run uses

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> World | None:
    """The world torchrun describes in the environment, or None without torchrun."""
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return None
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                 int(os.environ["LOCAL_RANK"]))


def leave(code: int) -> None:
    """End a torchrun worker with exit status ``code`` the way Python's multiprocessing ends its
    children: the standard streams flushed, then ``os._exit``, without the interpreter's
    teardown. Outside torchrun it returns, and the caller exits as usual.

    The teardown is where a gloo worker could abort after a finished run ("terminate called
    without an active exception", SIGABRT): the run was saved, but torchrun reported a failure.
    Every rank has left the process group by then (`process_group`) and a run folder's files are
    written atomically, so nothing is lost by skipping it. A script of your own that calls
    `descend.train` under torchrun can end with ``leave(0)`` for the same reason.
    """
    if launched() is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code)


def active() -> bool:
    """Is this process one of a process group (under torchrun, inside `train`)?"""
    return dist.is_available() and dist.is_initialized()


def world() -> World:
    """This process's world: the process group's, else torchrun's variables', else one."""
    if active():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return launched() or World()


@contextlib.contextmanager
def process_group(device: str) -> Iterator[World]:
    """Join torchrun's process group for the block and leave it after, however the block ends:
    nccl when ``device`` resolves to CUDA (this process's GPU: ``cuda:LOCAL_RANK``), gloo on
    the CPU. Without torchrun's variables, or inside a group made by the caller, it does
    nothing."""
    launch = launched()
    if launch is None or active():
        yield world()
        return
    kind = pick_device(device).type
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"torchrun trains on the CPU (gloo) or on CUDA GPUs (nccl), not on "
                          f"{kind}: pass --device cpu")
    if kind == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {launch.local_rank} has no GPU of its own (this "
                              f"machine has {torch.cuda.device_count()}): start at most that "
                              "many processes per node (--nproc-per-node)")
        torch.cuda.set_device(launch.local_rank)
    dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    try:
        yield launch
        # Every rank done before any leaves: a gloo process whose peer tore its group down
        # first could abort at exit ("terminate called without an active exception"): the
        # torchrun tests failed in 3 of 16 runs of their file without this, 0 of 6 with it.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device this process trains on: under torchrun, a CUDA run's GPU is its local rank's."""
    if active() and device.type == "cuda":
        return torch.device("cuda", world().local_rank)
    return device


def wrap(model: nn.Module, device: torch.device, *, find_unused: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun (the model itself otherwise).

    ``find_unused``: some parameters may get no gradient in a step (``--freeze-epochs``).
    """
    if not active():
        return model
    ddp = nn.parallel.DistributedDataParallel
    # No buffer broadcast before each forward (see the module's docstring); torch 2.14 renamed
    # the switch and warns on the old name.
    no_sync: dict[str, Any] = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        else {"broadcast_buffers": False})
    return ddp(model, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=find_unused, **no_sync)


def divisible_batch(batch_size: int) -> int:
    """The largest batch at most ``batch_size`` that splits evenly over the ranks (for a
    default batch size; an explicit one that does not split is an error, `rank_options`)."""
    size = world().size
    return max(size, batch_size - batch_size % size)


def split_batch(batch_size: int, world_size: int) -> int:
    """Each rank's part of the global batch ``batch_size``, which must split evenly."""
    if batch_size % world_size:
        raise ConfigError(f"--batch-size {batch_size} does not split evenly over {world_size} "
                          f"processes: it is the global batch, give a multiple of {world_size}")
    return batch_size // world_size


def rank_options(options: LoaderOptions) -> LoaderOptions:
    """This rank's loader options: its ``rank`` and ``world_size``, and its part of the global
    batch (``options.batch_size``, `split_batch`)."""
    if not active():
        return options
    w = world()
    return dataclasses.replace(options, batch_size=split_batch(options.batch_size, w.size),
                               rank=w.rank, world_size=w.size)


def describe_batch(batch_size: int) -> str:
    """`` (B on each of N processes)`` under torchrun, for the run log; else nothing."""
    if not active():
        return ""
    w = world()
    return f" ({batch_size // w.size} on each of {w.size} processes, {dist.get_backend()})"


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(*values: torch.Tensor | float) -> list[float]:
    """Each value (a number or a one-element tensor) summed over all ranks, as floats; in one
    process, the values themselves."""
    if not active():
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64,
                         device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable), on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


@torch.no_grad()
def broadcast_state(model: nn.Module) -> None:
    """Every rank's ``model`` takes rank 0's parameters and buffers, bit for bit."""
    if not active():
        return
    for t in model.state_dict().values():
        if t.is_contiguous():
            dist.broadcast(t, src=0)
        else:  # e.g. channels-last weights: the collective wants a dense buffer
            dense = t.contiguous()
            dist.broadcast(dense, src=0)
            t.copy_(dense)


@contextlib.contextmanager
def _leaders_first(leading: bool) -> Iterator[None]:
    """The leading ranks run the block, then the others do; if it fails on a leader, every
    rank fails with its error (a `DescendError` as it was, anything else described) instead of
    waiting forever for a rank that is gone."""
    if not active():
        yield
        return
    error: BaseException | None = None
    if leading:
        try:
            yield
        except BaseException as e:
            error = e
    shared = None if error is None else (
        (type(error), str(error)) if isinstance(error, DescendError)
        else (DescendError, f"rank {world().rank} failed: {type(error).__name__}: {error}"))
    outcomes: list[Any] = [None] * world().size
    dist.all_gather_object(outcomes, shared)
    if error is not None:
        raise error
    failed = next((o for o in outcomes if o is not None), None)
    if failed is not None:
        kind, message = failed
        try:
            raise kind(message)
        except TypeError:  # an error class made with more than a message
            raise DescendError(message) from None
    if not leading:
        yield


def main_first() -> contextlib.AbstractContextManager[None]:
    """Rank 0 runs the block before the other ranks (`_leaders_first`)."""
    return _leaders_first(world().is_main)


def local_first() -> contextlib.AbstractContextManager[None]:
    """The first rank of each machine runs the block (a download, a cache to build) before the
    other ranks there, which then find it done (`_leaders_first`)."""
    return _leaders_first(world().local_rank == 0)


def open_run_folder(path: Path, *, new: bool, overwrite: bool) -> RunFolder:
    """The run folder, opened and locked (`RunFolder.open`) by rank 0 alone: the other ranks
    follow rank 0's path (`RunFolder.follow`) and never create, lock or write anything there."""
    if not active():
        return RunFolder.open(path, new=new, overwrite=overwrite)
    path = Path(broadcast_object(str(path)))  # a default name holds rank 0's clock
    with main_first():
        folder = (RunFolder.open(path, new=new, overwrite=overwrite) if world().is_main
                  else RunFolder.follow(path))
    return folder


__all__ = ["World", "active", "broadcast_object", "broadcast_state",
           "describe_batch", "divisible_batch", "launched", "local_device", "local_first",
           "main_first", "open_run_folder", "process_group", "rank_options",
           "split_batch", "sum_over_ranks", "world", "wrap"]
