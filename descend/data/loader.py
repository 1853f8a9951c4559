"""Batches for training and evaluation, from memory or streamed from files.

`BatchLoader`, like airbench's loader: the whole split lives on the training device as uint8
once, every epoch draws a permutation, and each batch is one gather plus a few whole-batch
tensor operations (the exact augmentations on uint8, the rest on floats, then normalization).
`make_loader` picks it when the split is decoded in memory, and `StreamingLoader` (worker
processes decoding files) when the dataset was too big to decode. Both yield normalized
(x, y) on the device, and the random stream of an epoch is a function of (seed, epoch) only,
so an epoch replays exactly after ``--resume``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

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
from descend.data.splits import ImageFiles, ImageTensors
from descend.data.stats import channel_stats
from descend.data.streaming import StreamingLoader

__all__ = ["BatchLoader", "LoaderOptions", "Normalize", "channel_stats", "epoch_seed",
           "make_loader"]


class BatchLoader:
    """Batches of an in-memory split: ``for x, y in loader`` gives normalized x on the device."""

    def __init__(self, data: ImageTensors, options: LoaderOptions) -> None:
        # `batch_size` is per rank under torchrun: the check is of the batch of all ranks.
        check_batch_size(options.batch_size * options.world_size, len(data), options.drop_last)
        self.device = torch.device(options.device)
        # Training draws from the whole split every epoch; evaluation keeps this rank's block.
        lo, hi = (0, len(data)) if options.shuffle else shard_block(len(data), options.rank,
                                                                    options.world_size)
        self.images = data.images[lo:hi].to(self.device)
        self.labels = data.labels[lo:hi].to(self.device)
        self.batch_size, self.shuffle = options.batch_size, options.shuffle
        self.drop_last = options.drop_last
        self.rank, self.world_size = options.rank, options.world_size
        self.length = shard_length(len(data), options)  # images yielded per epoch
        self.augment = options.active_augment
        self.normalize = Normalize.for_options(options)
        self.seed, self.epoch = options.seed, 0
        self.mirrors = AlternatingMirrors.wanted(self.augment, len(self.labels), self.seed,
                                                 self.device)
        mb = self.images.numel() * self.images.element_size() / 1e6
        self.description = (
            f"in-memory uint8 images, {len(data):,} x {tuple(data.images.shape[1:])}, "
            f"{mb:,.0f} MB, augmented on {self.device.type}{options.describe_augment()}"
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return batch_count(self.length, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))
        order = None
        if self.shuffle:  # every rank draws the same permutation, then takes its share
            order = shard_permutation(torch.randperm(len(self.labels), generator=g,
                                                     device=self.device),
                                      self.rank, self.world_size, self.drop_last)
            if self.rank:  # and augments with its own stream (rank 0 goes on with this one)
                g.manual_seed(epoch_seed(self.seed, self.epoch, self.rank))
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.length)
            if order is None:  # evaluation: contiguous slices, no gather
                x, y = self.images[lo:hi], self.labels[lo:hi]
                idx = None
            else:  # index_select copies whole rows: 20x faster than images[idx] on uint8
                idx = order[lo:hi]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if self.augment is not None:
                mirrored = None
                if self.mirrors is not None:
                    where = torch.arange(lo, hi, device=self.device) if idx is None else idx
                    mirrored = self.mirrors(where, self.epoch)
                x = self.augment.run(x, g, mirrored)
            yield self.normalize(x), y


def make_loader(data: ImageTensors | ImageFiles, options: LoaderOptions
                ) -> BatchLoader | StreamingLoader:
    """The loader for ``data``: in memory if it was decoded, else streamed by worker processes.
    Its ``description`` says which (for the run log)."""
    if isinstance(data, ImageTensors):
        return BatchLoader(data, options)
    return StreamingLoader(data, options)
