"""BatchLoader: batches cut from in-memory uint8 images, augmented and normalized on the device.

Like airbench's loader: the whole split lives on the training device once, every epoch draws a
permutation, and each batch is one gather plus a few whole-batch tensor operations. The random
stream is a function of (seed, epoch) only, so an epoch replays exactly after ``--resume``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from descend.data.augment import Augment
from descend.data.splits import ImageTensors
from descend.errors import ConfigError


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the 0..1 scale."""
    n, c = images.shape[:2]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 4096):
        chunk = images[start:start + 4096].to(torch.float64).div_(255.0)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


class BatchLoader:
    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        if drop_last and batch_size > len(data):
            raise ConfigError(
                f"batch size {batch_size} is larger than the {len(data)} training images, so "
                "dropping the last partial batch leaves none: lower --batch-size or pass "
                "--no-drop-last"
            )
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = augment
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        self.seed, self.epoch = seed, 0
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        order = (torch.randperm(n, generator=g, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images[idx].float().div_(255.0)
            if self.augment is not None:
                x = self.augment(x, g)
            x = x.sub_(self.mean).div_(self.std).contiguous(memory_format=self.memory_format)
            yield x, self.labels[idx]
