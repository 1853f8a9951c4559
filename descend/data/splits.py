"""The splits of a dataset, decoded or not, and the deterministic stratified split.

A split is either `ImageTensors` (decoded uint8 pixels in memory, or memory-mapped from the
cache) or `ImageFiles` (a file list and labels, decoded per sample by the streaming loader when
the decoded dataset would not fit the memory budget). Both carry a ``key``: a hash of the source
files' identity and of the selection, under which derived results (normalization statistics)
are cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


def _subset_key(key: str | None, index: torch.Tensor) -> str | None:
    if key is None:
        return None
    h = hashlib.sha256(key.encode())
    h.update(index.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:32]


@dataclass
class ImageTensors:
    """Decoded images of one split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    ``source_sizes`` (N, 2) holds each file's (width, height) before resizing, when the images
    came from files.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str] | None = None
    key: str | None = None
    source_sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()

    def subset(self, index: torch.Tensor) -> ImageTensors:
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        sizes = self.source_sizes[index] if self.source_sizes is not None else None
        return ImageTensors(self.images[index], self.labels[index], paths,
                            _subset_key(self.key, index), sizes)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class ImageFiles:
    """Image files of one split, not decoded: what the streaming loader reads per sample.

    Each file is decoded like the in-memory path decodes it (`load_pixels` with the same
    ``size``, ``resize`` and ``min_size``), so both paths feed a model identical pixels.
    """

    paths: list[str]
    labels: torch.Tensor
    channels: int
    size: tuple[int, int]
    resize: int | None = None
    min_size: int = 1
    key: str | None = None
    source_sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes the split would take decoded: N * C * H * W."""
        return len(self) * self.channels * self.size[0] * self.size[1]

    def subset(self, index: torch.Tensor) -> ImageFiles:
        sizes = self.source_sizes[index] if self.source_sizes is not None else None
        return ImageFiles([self.paths[i] for i in index.tolist()], self.labels[index],
                          self.channels, self.size, self.resize, self.min_size,
                          _subset_key(self.key, index), sizes)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()

    def load(self, i: int) -> np.ndarray:
        """The uint8 (C, H, W) pixels of file ``i``; raises `BadImage` if it cannot be used."""
        from descend.data.images import load_pixels

        return load_pixels(self.paths[i], self.size, self.channels, resize=self.resize,
                           min_size=self.min_size)


Split = ImageTensors | ImageFiles


@dataclass
class DataSplits:
    """Everything training needs from a dataset: the splits, the class names, and notes.

    ``cache`` is the cache dir that derived results (normalization statistics) may use.
    ``resize``: images were scaled to this shorter side before the centred ``image_size``
    window was cut (``resize:R,center-crop:C``); None when they were scaled to just cover it.
    Prediction must decode the same way (`load_pixels(..., resize=resize)`).
    """

    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split | None = None
    val_source: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cache: Path | None = None
    resize: int | None = None

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.image_size

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ImageTensors)


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val): ``fraction`` of every class held out, the same for the same seed.

    Each class keeps at least one training image and, when it has two or more, gives at least
    one to validation, so that small classes are represented on both sides.
    """
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(len(idx) * fraction)
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values
