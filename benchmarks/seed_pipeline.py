"""The seed's per-sample input path, shared by the benchmarks that measure against it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class ArrayCIFAR(Dataset):
    """torchvision.datasets.CIFAR10's __getitem__: numpy HWC -> PIL -> transform, per sample."""

    def __init__(self, data: np.ndarray, targets: list[int], transform: object) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]  # type: ignore[operator]
