"""The model registry: ``create_model(ModelSpec("cnn", 10, 3, (32, 32)))``.

A `ModelSpec` (name + keyword arguments + the data's shape) is all a checkpoint needs to build
the model again, so loading never unpickles code.

Each model file registers itself with its `Recipe`: what the model trains best with, for the
settings a user leaves open, each value with the measurement that chose it (timm's shape: the
model carries its ``default_cfg``). The run plan (`descend.training.planning.plan`) asks
`recipe_for(name, fine_tuning)` and fills only what the user left open.
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
DEFAULT_MODEL = "fastres"  # `descend train` with no --model


@dataclass(frozen=True)
class Recipe:
    """A model's training defaults. ``peak_lr`` is one-cycle's peak at batch 256 (the run
    scales it with its batch: the linear scaling rule); ``widths`` is the ladder a time budget
    climbs (narrowest first; empty: the model's widths are fixed), keeping the widest that fits
    ``min_epochs`` epochs; ``model_args`` gives the model's arguments that follow from the
    training augmentation (fastres's test-time augmentation). ``fine_tuning`` is the recipe for
    starting from trained weights (``--pretrained``, ``--weights``, ``--init``), where it
    differs; its ``cached_head`` and ``epochs`` fill ``--cached-head`` and ``--epochs``."""

    peak_lr: float = 0.2
    label_smoothing: float = 0.1  # cheap regularisation, worth ~1% on CIFAR-10 (ResNet recipes)
    # Random 4-pixel shifts and mirroring: the two that pay on small images.
    augment: str = "crop:4,hflip"
    widths: tuple[tuple[int, ...], ...] = ()
    min_epochs: int = 1
    model_args: Callable[[str | None], dict[str, Any]] | None = None
    fine_tuning: Recipe | None = None
    # Starting from trained weights: fit the new head on cached features first
    # (`descend.training.fitting.features`), then ``epochs`` of fine-tuning (None: as sized
    # otherwise).
    cached_head: bool = False
    epochs: int | None = None

    def for_start(self, fine_tuning: bool) -> Recipe:
        """This recipe, or its fine-tuning one when the run starts from trained weights."""
        return self.fine_tuning if fine_tuning and self.fine_tuning else self


GENERIC = Recipe()  # the ResNet-style defaults, for a model that brings none
_RECIPES: dict[str, Recipe] = {}


def register(name: str, recipe: Recipe = GENERIC) -> Callable[[Any], Any]:
    """Class decorator: a model under ``name``, with its recipe."""
    def add(factory: Any) -> Any:
        _RECIPES[name] = recipe
        return MODELS.register(name)(factory)

    return add


def recipe_for(name: str, fine_tuning: bool = False) -> Recipe:
    """The recipe of model ``name`` (``tv:NAME``: torchvision's), for a new or a fine-tuned
    start."""
    if name.startswith("tv:"):
        from descend.models.torchvision_models import RECIPE

        return RECIPE.for_start(fine_tuning)
    MODELS.get(name)  # an unknown name is a ConfigError listing the known ones
    return _RECIPES.get(name, GENERIC).for_start(fine_tuning)


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
    if spec.name.startswith("tv:"):
        from descend.models import torchvision_models

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
    shared = {"num_classes", "in_channels", "image_size"}
    params = inspect.signature(MODELS.get(spec.name)).parameters.values()
    defaults = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default)
                for p in params if p.name not in shared and p.default is not p.empty}
    return ModelSpec(spec.name, spec.num_classes, spec.in_channels, spec.image_size,
                     {**defaults, **spec.kwargs})


def model_names() -> list[str]:
    return MODELS.names() + ["tv:NAME (any torchvision classification model)"]
