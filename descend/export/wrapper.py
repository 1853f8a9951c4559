"""The module that is exported: decoded uint8 pixels in, the checkpoint's logits out.

Normalization lives inside the exported graph, so a user of the file needs only the decoding
step (resize and centre crop, described in the metadata) and never the run's mean and std.
"""

from __future__ import annotations

import torch
from torch import nn

from descend.data.batching import Normalize


class PixelClassifier(nn.Module):
    """``model((pixels.float() / 255 - mean) / std)`` for uint8 pixels (N, C, H, W).

    The scale and shift are `Normalize`'s own tensors and the arithmetic is its uint8 path
    (x * scale + shift), so the exported logits are the ones ``descend predict`` computes.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        normalize = Normalize(mean, std, torch.device("cpu"))
        self.model = model
        self.register_buffer("scale", normalize.scale_uint8)
        self.register_buffer("shift", normalize.shift)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.float() * self.scale + self.shift)
