"""The seed's MyNet: a multi-layer perceptron on the flattened image.

Linear(C*H*W, 1024) -> 512 -> 256 -> 64 -> classes, each hidden layer followed by
BatchNorm1d and ReLU (and dropout when asked; the seed defines Dropout(0.1) but leaves it out).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from descend.models.registry import register


@register("mlp")
class MLP(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: Sequence[int] = (32, 32),
        hidden: Sequence[int] = (1024, 512, 256, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size[0] * image_size[1]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
