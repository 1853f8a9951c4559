"""StreamingLoader: for datasets whose decoded images do not fit in memory.

Worker processes of a `torch.utils.data.DataLoader` decode files per sample (the same
`load_pixels` as the in-memory path, so a model sees identical pixels either way) and collate
uint8 batches; the main process moves each batch to the device and augments and normalizes it
there with the same whole-batch ops as `BatchLoader`. The interface is `BatchLoader`'s:
``set_epoch``, ``len``, and iteration yielding normalized (x, y) on the device, with the order
and the augmentation a function of (seed, epoch) only, so resumed runs replay exactly; the
random draws are even the same as `BatchLoader`'s, so both paths give identical batches.

A file that turns out unusable only when fully decoded (a truncated file with a sound header)
is dropped from its batch, reported through ``on_skip`` and kept in ``skipped``; with
``strict`` it stops the run instead, naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from descend.data.batching import (
    AlternatingMirrors,
    LoaderOptions,
    Normalize,
    batch_count,
    check_batch_size,
    epoch_seed,
    shard_block,
    shard_length,
    shard_permutation,
)
from descend.data.images import BadImage
from descend.data.splits import ImageFiles
from descend.errors import DataError

# Samples each worker decodes ahead: enough to ride out a slow file, little memory.
PREFETCH_BATCHES = 4


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class _FileSamples(Dataset[tuple[torch.Tensor, int, int, str]]):
    """Sample i: (uint8 pixels, label, i, problem); label -1 and a reason if unusable."""

    def __init__(self, files: ImageFiles) -> None:
        self.files = files
        self.blank = torch.zeros((files.channels, *files.size), dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:
        try:
            return torch.from_numpy(self.files.load(i)), int(self.files.labels[i]), i, ""
        except BadImage as e:
            return self.blank, -1, i, f"{e.reason}\0{e.detail}"
        except Exception as e:  # whatever a file does, the run goes on without it
            return self.blank, -1, i, f"corrupt\0{type(e).__name__}: {e}"


def _collate(items: list[tuple[torch.Tensor, int, int, str]]) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    x = torch.stack([it[0] for it in items])
    y = torch.tensor([it[1] for it in items], dtype=torch.int64)
    idx = torch.tensor([it[2] for it in items], dtype=torch.int64)
    return x, y, idx, [(it[2], it[3]) for it in items if it[3]]


class EpochBatches(Sampler[list[int]]):
    """Index batches of one epoch, cut from ``order`` (set by the loader before each epoch)."""

    def __init__(self, n: int, batch_size: int, drop_last: bool) -> None:
        self.n, self.batch_size, self.drop_last = n, batch_size, drop_last
        self.order = torch.arange(n)

    def __len__(self) -> int:
        return batch_count(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(len(self)):
            yield self.order[b * self.batch_size:(b + 1) * self.batch_size].tolist()


class StreamingLoader:
    """Batches decoded from files by worker processes, augmented and normalized on the device."""

    def __init__(self, data: ImageFiles, options: LoaderOptions) -> None:
        # `batch_size` is per rank under torchrun: the check is of the batch of all ranks.
        check_batch_size(options.batch_size * options.world_size, len(data), options.drop_last)
        self.files = data
        self.device = torch.device(options.device)
        self.augment = options.active_augment
        self.normalize = Normalize.for_options(options)
        self.seed, self.epoch = options.seed, 0
        self.mirrors = AlternatingMirrors.wanted(self.augment, len(data), self.seed, self.device)
        self.strict, self.on_skip = options.strict, options.on_skip
        self.skipped: list[dict[str, str]] = []
        self.workers = default_workers() if options.workers is None else options.workers
        self.shuffle = options.shuffle
        self.rank, self.world_size = options.rank, options.world_size
        self.batches = EpochBatches(shard_length(len(data), options), options.batch_size,
                                    options.drop_last)
        self.loader = DataLoader(
            _FileSamples(data), batch_sampler=self.batches, num_workers=self.workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers > 0,
            prefetch_factor=PREFETCH_BATCHES if self.workers > 0 else None,
        )
        self.description = (
            f"streaming from {len(data):,} files with {self.workers} worker process"
            f"{'es' if self.workers != 1 else ''}, decoded at {data.channels}x{data.size[0]}x"
            f"{data.size[1]}, augmented on {self.device.type}{options.describe_augment()}"
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def _report(self, problems: list[tuple[int, str]]) -> None:
        seen = {s["path"] for s in self.skipped}
        for i, problem in problems:
            reason, _, detail = problem.partition("\0")
            entry = {"path": self.files.paths[i], "reason": reason, "detail": detail}
            if self.strict:
                raise DataError(f"--strict: {entry['path']} cannot be used: {reason} ({detail}); "
                                "fix or remove it, or run without --strict to skip it")
            if entry["path"] not in seen:
                self.skipped.append(entry)
                if self.on_skip is not None:
                    self.on_skip(entry)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # The order and then the augmentation from one generator, drawn in the same sequence
        # as BatchLoader: without bad files, both loaders give the very same batches.
        # Under torchrun, each rank takes its share of the same permutation (or its block of the
        # files) and augments with its own stream, as BatchLoader does.
        g = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))
        n = len(self.files)
        if self.shuffle:
            self.batches.order = shard_permutation(
                torch.randperm(n, generator=g, device=self.device).cpu(), self.rank,
                self.world_size, self.batches.drop_last)
            if self.rank:
                g.manual_seed(epoch_seed(self.seed, self.epoch, self.rank))
        else:
            self.batches.order = torch.arange(*shard_block(n, self.rank, self.world_size))
        for x, y, idx, problems in self.loader:
            if problems:
                self._report(problems)
                keep = y >= 0
                x, y, idx = x[keep], y[keep], idx[keep]
                if len(y) == 0:
                    if self.world_size > 1:  # a skipped step would leave the ranks out of step
                        raise DataError(
                            f"every file of a batch was unusable (e.g. "
                            f"{self.files.paths[problems[0][0]]}); under torchrun every process "
                            "must take the same steps: fix or remove the files, or train in one "
                            "process")
                    continue
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.augment is not None:
                mirrored = self.mirrors(idx, self.epoch) if self.mirrors is not None else None
                x = self.augment.run(x, g, mirrored)
            yield self.normalize(x), y
