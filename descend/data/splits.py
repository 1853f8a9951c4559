"""In-memory splits of decoded images, and the deterministic stratified split."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageTensors:
    """Decoded images of one split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageTensors:
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return ImageTensors(self.images[index], self.labels[index], paths)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class DataSplits:
    """Everything training needs from a dataset: the splits, the class names, and notes."""

    name: str
    classes: list[str]
    train: ImageTensors
    val: ImageTensors
    test: ImageTensors | None = None
    val_source: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])


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
