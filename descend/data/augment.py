"""Whole-batch augmentations by name, each sample drawing its own random parameters.

A spec is a comma-separated list, applied in order: ``crop:4,hflip,cutout:8``. Every
augmentation takes a float batch (N, C, H, W) with values in [0, 1] and a ``torch.Generator`` on
the batch's device, and returns a batch of the same shape: no per-sample Python, so the cost is
a few tensor operations per batch on whatever device trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from descend.errors import ConfigError
from descend.registry import Registry

BatchOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry[Callable[..., BatchOp]] = Registry("augmentation")


def _rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device)


@AUGMENTATIONS.register("crop")
def random_crop(padding: float = 4) -> BatchOp:
    """Random crop of the original size from the image zero-padded by ``padding`` pixels."""
    p = int(padding)

    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        xp = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = xp.gather(2, rows.expand(n, c, h, w + 2 * p))
        return x.gather(3, cols.expand(n, c, h, w))

    return op


@AUGMENTATIONS.register("hflip")
def horizontal_flip(p: float = 0.5) -> BatchOp:
    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        flip = _rand(x.shape[0], g, x.device) < p
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    return op


@AUGMENTATIONS.register("vflip")
def vertical_flip(p: float = 0.5) -> BatchOp:
    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        flip = _rand(x.shape[0], g, x.device) < p
        return torch.where(flip[:, None, None, None], x.flip(2), x)

    return op


@AUGMENTATIONS.register("cutout")
def cutout(size: float = 8) -> BatchOp:
    """Zero a ``size`` x ``size`` square at a random centre (DeVries & Taylor, 2017)."""
    s = int(size)

    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n, 1, 1), generator=g, device=x.device)
        cx = torch.randint(0, w, (n, 1, 1), generator=g, device=x.device)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        hole = ((ys - cy).abs() <= s // 2) & ((xs - cx).abs() <= s // 2)
        return x.masked_fill(hole[:, None], 0.0)

    return op


@dataclass
class Augment:
    """A parsed spec: the ops, and the canonical text they came from."""

    spec: str
    ops: list[BatchOp]

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for op in self.ops:
            x = op(x, g)
        return x


def parse_augment(spec: str | None) -> Augment:
    """Parse ``"crop:4,hflip"``; ``""``, ``"none"`` or None mean no augmentation."""
    ops: list[BatchOp] = []
    spec = (spec or "").strip()
    if spec.lower() in ("", "none"):
        return Augment("none", [])
    for item in spec.split(","):
        name, _, args = item.strip().partition(":")
        factory = AUGMENTATIONS.get(name.strip())
        try:
            values = [float(a) for a in args.split(":") if a.strip()] if args else []
            ops.append(factory(*values))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad augmentation {item!r}: {e}; example: crop:4,hflip") from None
    return Augment(spec, ops)
