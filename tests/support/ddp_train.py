"""A `descend.train` run for tests to start under torchrun, recording what each rank did.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/support/ddp_train.py \\
        DATA_FOLDER RUN_FOLDER RECORD_FOLDER [--kill-at-epoch K] [--stop-on-rank0-at K]
        [--epochs N] [--model NAME] [--ema-decay D]

Every rank writes ``RECORD_FOLDER/rank{r}.json``: per epoch, the indices (into the training
split) of the images it trained on, its own loss sum, correct count and image count, and the
epoch's row as it saw it. The indices are found by matching each training batch's rows against
the whole normalized split (the run uses no augmentation). ``--kill-at-epoch K``: rank 0 kills
itself with SIGKILL as epoch K (1-based) starts, after ``last.pt`` of epoch K - 1 is written;
``--stop-on-rank0-at K``: rank 0 alone sets ``run.epoch.stop`` after epoch K.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from descend.config import TrainConfig
from descend.data.batching import Normalize
from descend.data.splits import ImageTensors
from descend.training.fitting.callbacks import Callback
from descend.training.fitting.distributed import leave, world
from descend.training.fitting.run import Run
from descend.training.trainer import train


class SeenBatches:
    """The training loader, with the split index of every image it yields noted down."""

    def __init__(self, inner: Any, index_of: dict[bytes, int], seen: dict[int, list[int]]
                 ) -> None:
        self.inner, self.index_of, self.seen, self.epoch = inner, index_of, seen, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.inner:
            self.seen.setdefault(self.epoch, []).extend(
                self.index_of[row.contiguous().numpy().tobytes()] for row in x.cpu())
            yield x, y


class Record(Callback):
    """Notes the images, the local sums and the rows of each epoch on this rank."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[int, list[int]] = {}
        self.sums: dict[int, list[float]] = {}
        self.rows: list[dict[str, float]] = []
        self.weights: dict[int, str] = {}

    def on_train_start(self, run: Run) -> None:
        split = run.data.train
        pixels = (split.images if isinstance(split, ImageTensors)
                  else torch.stack([torch.from_numpy(split.load(i)) for i in range(len(split))]))
        rows = Normalize.for_options(run.loader_options)(pixels.to(run.device)).cpu()
        index_of = {row.contiguous().numpy().tobytes(): i for i, row in enumerate(rows)}
        assert len(index_of) == len(split), "the test images must all differ"
        run.train_batches = SeenBatches(run.train_batches, index_of, self.seen)

    def on_validation_start(self, run: Run) -> None:
        running = run.epoch.running
        assert running is not None
        self.sums[run.epoch.index] = [float(running.loss_sum), float(running.correct),
                                      float(running.seen)]
        # Before RankSync copies rank 0's weights over: equal only if the gradients were shared.
        self.weights[run.epoch.index] = hashlib.sha256(b"".join(
            p.detach().cpu().contiguous().numpy().tobytes()
            for p in run.model.parameters())).hexdigest()

    def on_epoch_end(self, run: Run) -> None:
        self.rows.append(dict(run.epoch.row))

    def on_train_end(self, run: Run) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{world().rank}.json").write_text(json.dumps({
            "world_size": world().size, "seen": self.seen, "sums": self.sums,
            "rows": self.rows, "files": sorted(p.name for p in run.run_dir.iterdir()),
            "owns_folder": run.folder.owned, "weights": self.weights,
            "trained_as": type(run.step_model).__name__,
            "callbacks": [type(cb).__name__ for cb in run.callbacks.callbacks]}))


class KillAt(Callback):
    """Rank 0 dies (SIGKILL, no cleanup) as epoch ``epoch`` (1-based) starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, run: Run) -> None:
        if world().is_main and run.epoch.index + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class StopOnRankZero(Callback):
    """Rank 0 alone decides to stop after epoch ``epoch`` (as a time budget might)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, run: Run) -> None:
        if world().is_main and run.epoch.index + 1 == self.epoch:
            run.epoch.stop = "rank 0 stops"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("record")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--kill-at-epoch", type=int, default=0)
    p.add_argument("--stop-on-rank0-at", type=int, default=0)
    p.add_argument("--model", default="mlp")
    p.add_argument("--ema-decay", type=float, default=0.0)
    args = p.parse_args()
    callbacks: list[Callback] = [Record(Path(args.record))]
    if args.kill_at_epoch:
        callbacks.append(KillAt(args.kill_at_epoch))
    if args.stop_on_rank0_at:
        callbacks.append(StopOnRankZero(args.stop_on_rank0_at))
    train(TrainConfig(data=f"imagefolder:{args.data}", model=args.model, epochs=args.epochs,
                      batch_size=8, image_size=16, out=args.out, progress=False,
                      download=False, lr=0.05, augment="none", device="cpu",
                      # float32 always: the tests compare the weights of separate runs, and on a
                      # CPU with native bfloat16 each new run picks its precision by timing.
                      amp=False, ema_decay=args.ema_decay),
          callbacks=callbacks)
    leave(0)  # no interpreter teardown for a torchrun worker (see `leave`)


if __name__ == "__main__":
    main()
