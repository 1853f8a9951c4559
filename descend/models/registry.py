"""The model registry: ``create_model("cnn", num_classes=10, in_channels=3, image_size=(32, 32))``.

A `ModelSpec` (name + keyword arguments + the data's shape) is all a checkpoint needs to build
the model again, so loading never unpickles code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from descend.errors import ConfigError
from descend.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


@dataclass
class ModelSpec:
    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(d["name"], int(d["num_classes"]), int(d["in_channels"]),
                   (int(d["image_size"][0]), int(d["image_size"][1])), dict(d.get("kwargs", {})))


def create_model(spec: ModelSpec) -> nn.Module:
    from descend.models import cnn, fastres, mlp, torchvision_models  # noqa: F401  (fill it)

    if spec.name.startswith("tv:"):
        return torchvision_models.create(spec)
    factory = MODELS.get(spec.name)
    try:
        return factory(num_classes=spec.num_classes, in_channels=spec.in_channels,
                       image_size=spec.image_size, **spec.kwargs)
    except (TypeError, ValueError, RuntimeError) as e:  # an unknown, wrong or absurd argument
        raise ConfigError(f"bad arguments for model {spec.name!r} "
                          f"({', '.join(f'{k}={v!r}' for k, v in spec.kwargs.items()) or 'none'}"
                          f"): {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def with_defaults(spec: ModelSpec) -> ModelSpec:
    """``spec`` with every argument its model takes written out, defaults included: a
    checkpoint then rebuilds the same model even after a default changes."""
    if spec.name.startswith("tv:"):
        return spec
    from descend.models import cnn, fastres, mlp, torchvision_models  # noqa: F401

    shared = {"num_classes", "in_channels", "image_size"}
    params = inspect.signature(MODELS.get(spec.name)).parameters.values()
    defaults = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default)
                for p in params if p.name not in shared and p.default is not p.empty}
    return ModelSpec(spec.name, spec.num_classes, spec.in_channels, spec.image_size,
                     {**defaults, **spec.kwargs})


def model_names() -> list[str]:
    from descend.models import cnn, fastres, mlp, torchvision_models  # noqa: F401

    return MODELS.names() + ["tv:NAME (any torchvision classification model)"]
