"""A small convolutional net for time-to-accuracy on a laptop CPU, shaped after airbench.

stem conv -> three blocks of [conv, max-pool /2, BN, GELU, conv, BN, GELU] -> global max-pool
-> linear. Widths double per block; the defaults (16, 32, 64) train CIFAR-10 fastest to a
useful accuracy on two CPU cores (see BENCHMARKS.md); pass ``widths`` for a bigger net.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from descend.models.registry import register


def _conv_bn(ci: int, co: int) -> list[nn.Module]:
    return [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.GELU()]


class ConvBlock(nn.Sequential):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU: pooling before BN halves its cost."""

    def __init__(self, ci: int, co: int) -> None:
        conv, bn, act = _conv_bn(ci, co)
        super().__init__(conv, nn.MaxPool2d(2), bn, act, *_conv_bn(co, co))


@register("cnn")
class CNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: Sequence[int] = (32, 32),
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        w = list(widths)
        self.stem = nn.Sequential(*_conv_bn(in_channels, w[0]))
        self.blocks = nn.Sequential(
            ConvBlock(w[0], w[0]), ConvBlock(w[0], w[1]), ConvBlock(w[1], w[2])
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                  nn.Linear(w[2], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
