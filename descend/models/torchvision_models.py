"""``tv:NAME``: any torchvision classification model, adapted to the data's classes and shape.

Weights start random (no download at run time). Grey images are repeated to three channels,
and images smaller than a model can take are upsampled on the way in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from descend.errors import ConfigError
from descend.models.registry import ModelFamily, ModelSpec, Recipe, register_family

PREFIX = "tv:"

# torchvision's models have recipes of their own, one for training from scratch and one for
# fine-tuning trained weights (--pretrained, --weights, --init). Measured with tv:resnet18 on the
# built-in sample (3,000 images, 32x32), 6 epochs at batch 256, one-cycle, the best validation
# accuracy (BENCHMARKS.md B12):
#   from scratch:  peak 0.2: 24.9%, 0.1: 43.6%, 0.05: 49.3%, 0.02: 46.5%
#   fine-tuning weights trained on 20,000 other CIFAR-10 images (56% on their own validation):
#                  peak 0.2: 52.4%, 0.1: 62.4%, 0.05: 62.9%, 0.02: 60.5%, 0.01: 60.4%, 0.002: 58.3%
# The generic peak (0.2, the ResNet recipes' 0.1 at batch 128) is too high for these nets on
# small images; fine-tuning these weights wanted the same peak as training from scratch.
RECIPE = Recipe(
    peak_lr=0.05,
    fine_tuning=Recipe(peak_lr=0.05),
)


class InputAdapter(nn.Module):
    """Repeat grey to RGB and resize to ``min_size`` when the model needs bigger images."""

    def __init__(self, model: nn.Module, in_channels: int, min_size: int | None) -> None:
        super().__init__()
        self.model, self.repeat, self.min_size = model, 3 if in_channels == 1 else 1, min_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.expand(-1, 3, -1, -1)
        if self.min_size and min(x.shape[-2:]) < self.min_size:
            x = F.interpolate(x, size=(self.min_size, self.min_size), mode="bilinear",
                              align_corners=False)
        return self.model(x)


def is_torchvision_name(model: str | None) -> bool:
    """Whether ``--model`` names one of torchvision's models (``tv:NAME``)."""
    return (model or "").startswith(PREFIX)


def create(spec: ModelSpec) -> nn.Module:
    import torchvision.models as tvm

    name = spec.name.removeprefix(PREFIX)
    available = tvm.list_models(module=tvm)
    if name not in available:
        raise ConfigError(
            f"unknown torchvision model {name!r}; torchvision classification models are: "
            f"{', '.join(available)}"
        )
    if spec.in_channels not in (1, 3):
        raise ConfigError(f"tv:{name} needs 1- or 3-channel images, got {spec.in_channels}")
    kwargs = dict(spec.kwargs)
    if name.startswith("vit_"):
        kwargs.setdefault("image_size", 224)  # ViT's position table is built for one size
    model = tvm.get_model(name, weights=None, num_classes=spec.num_classes, **kwargs)
    min_size = _smallest_input(model, spec)
    return InputAdapter(model, spec.in_channels, min_size)


def _smallest_input(model: nn.Module, spec: ModelSpec) -> int | None:
    """None if the model takes the data's size as is, else the size it needs (tried in eval)."""
    h, w = spec.image_size
    was_training = model.training
    model.eval()
    try:
        for size in (None, 64, 96, 224, 299):
            shape = (1, 3, h, w) if size is None else (1, 3, size, size)
            try:
                with torch.no_grad():
                    model(torch.zeros(shape))
                return size
            except (RuntimeError, ValueError, AssertionError):
                continue
    finally:
        model.train(was_training)
    raise ConfigError(f"{spec.name} does not accept {h}x{w} images, even resized up to 299")


FAMILY = register_family(ModelFamily(
    PREFIX, f"{PREFIX}NAME", "any torchvision classification model", create, RECIPE,
    weights="(torchvision's, downloaded once into torch's cache)"))
