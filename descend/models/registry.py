"""The model registry: ``create_model(ModelSpec("cnn", 10, 3, (32, 32)))``.

A `ModelSpec` (name + keyword arguments + the data's shape) is all a checkpoint needs to build
the model again, so loading never unpickles code.

Each model file registers itself as a `ModelEntry`: its factory, its `Recipe` (what the model
trains best with, for the settings a user leaves open, each value with the measurement that
chose it: timm's shape, the model carries its ``default_cfg``) and where its ImageNet weights
come from, if it has any. A family of models named by a prefix (``tv:NAME``) registers one
`ModelFamily`. The run plan (`descend.training.planning.plan`) asks
`recipe_for(name, fine_tuning)` and fills only what the user left open; ``--model``'s help is
`models_help`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from descend.errors import ConfigError
from descend.registry import Registry, name_list

DEFAULT_MODEL = "fastres"  # `descend train` with no --model


@dataclass(frozen=True)
class Recipe:
    """A model's training defaults. ``peak_lr`` is one-cycle's peak at batch 256 (the run
    scales it with its batch: the linear scaling rule); ``widths`` is the ladder a time budget
    climbs (narrowest first; empty: the model's widths are fixed), keeping the widest that fits
    the epochs it needs (``min_epochs``: one figure for every rung, or one per rung, as
    `epochs_needed` reads it); ``model_args`` gives the model's arguments that follow from the
    training augmentation (fastres's test-time augmentation). ``fine_tuning`` is the recipe for
    starting from trained weights (``--pretrained``, ``--weights``, ``--init``), where it
    differs; its ``cached_head`` and ``epochs`` fill ``--cached-head`` and ``--epochs``."""

    peak_lr: float = 0.2
    label_smoothing: float = 0.1  # cheap regularisation, worth ~1% on CIFAR-10 (ResNet recipes)
    weight_decay: float = 5e-4  # L2, as in the ResNet recipes for CIFAR-10
    # Random 4-pixel shifts and mirroring: the two that pay on small images.
    augment: str = "crop:4,hflip"
    widths: tuple[tuple[int, ...], ...] = ()
    min_epochs: int | tuple[int, ...] = 1
    model_args: Callable[[str | None], dict[str, Any]] | None = None
    fine_tuning: Recipe | None = None
    # Starting from trained weights: fit the new head on cached features first
    # (`descend.training.fitting.features`), then ``epochs`` of fine-tuning (None: as sized
    # otherwise).
    cached_head: bool = False
    epochs: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.min_epochs, tuple) and len(self.min_epochs) != len(self.widths):
            raise ValueError(f"min_epochs has {len(self.min_epochs)} figures for "
                             f"{len(self.widths)} widths: give one per rung, or one for all")

    def epochs_needed(self, widths: tuple[int, ...]) -> int:
        """The fewest epochs a budget must fit for the ladder's ``widths`` to be taken."""
        if isinstance(self.min_epochs, int):
            return self.min_epochs
        return self.min_epochs[self.widths.index(tuple(widths))]

    def for_start(self, fine_tuning: bool) -> Recipe:
        """This recipe, or its fine-tuning one when the run starts from trained weights."""
        return self.fine_tuning if fine_tuning and self.fine_tuning else self


GENERIC = Recipe()  # the ResNet-style defaults, for a model that brings none


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: the factory that builds it (``num_classes``, ``in_channels``,
    ``image_size`` and its own arguments), its recipe, and where ``--pretrained`` finds its
    ImageNet weights ("": it has none)."""

    factory: Callable[..., nn.Module]
    recipe: Recipe = GENERIC
    weights: str = ""


@dataclass(frozen=True)
class ModelFamily:
    """Models named ``prefix`` + a name of their own (``tv:resnet18``), built by one ``create``
    from the whole `ModelSpec`; ``usage`` and ``about`` are how the help names them (``tv:NAME``,
    "any torchvision classification model")."""

    prefix: str
    usage: str
    about: str
    create: Callable[[ModelSpec], nn.Module]
    recipe: Recipe = GENERIC
    weights: str = ""


MODELS: Registry[ModelEntry] = Registry("model")
_FAMILIES: list[ModelFamily] = []


def register(name: str, recipe: Recipe = GENERIC, *,
             weights: str = "") -> Callable[[Any], Any]:
    """Class decorator: a model under ``name``, with its recipe (and its weights' source)."""
    def add(factory: Any) -> Any:
        MODELS.register(name)(ModelEntry(factory, recipe, weights))
        return factory

    return add


def register_family(family: ModelFamily) -> ModelFamily:
    """Add the models named ``family.prefix`` + NAME."""
    _FAMILIES.append(family)
    return family


def family_of(name: str) -> ModelFamily | None:
    """The family whose prefix ``name`` starts with, or None for a model registered by name."""
    return next((f for f in _FAMILIES if name.startswith(f.prefix)), None)


def has_imagenet_weights(name: str | None) -> bool:
    """Whether ``--pretrained`` can start model ``name`` from ImageNet weights."""
    if not name:
        return False
    family = family_of(name)
    if family is not None:
        return bool(family.weights)
    return name in MODELS and bool(MODELS.get(name).weights)


def recipe_for(name: str, fine_tuning: bool = False) -> Recipe:
    """The recipe of model ``name`` (``tv:NAME``: its family's), for a new or a fine-tuned
    start; an unknown name is a `ConfigError` listing the known ones."""
    family = family_of(name)
    recipe = family.recipe if family else MODELS.get(name).recipe
    return recipe.for_start(fine_tuning)


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
    family = family_of(spec.name)
    if family:
        return family.create(spec)
    factory = MODELS.get(spec.name).factory
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
    if family_of(spec.name):
        return spec
    shared = {"num_classes", "in_channels", "image_size"}
    params = inspect.signature(MODELS.get(spec.name).factory).parameters.values()
    defaults = {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default)
                for p in params if p.name not in shared and p.default is not p.empty}
    return ModelSpec(spec.name, spec.num_classes, spec.in_channels, spec.image_size,
                     {**defaults, **spec.kwargs})


def model_names() -> list[str]:
    return MODELS.names() + [f"{f.usage} ({f.about})" for f in _FAMILIES]


def _listed() -> list[tuple[str, Recipe, str]]:
    """(name, recipe, weights) of every model for the help: the default first, then the rest
    in the order they registered, families last."""
    names = [DEFAULT_MODEL, *(n for n in MODELS if n != DEFAULT_MODEL)]
    return ([(n, MODELS.get(n).recipe, MODELS.get(n).weights) for n in names]
            + [(f.usage, f.recipe, f.weights) for f in _FAMILIES])


def models_help() -> str:
    """``--model``'s help: every model, and those with ImageNet weights."""
    listed = _listed()
    weighted = [name for name, _, weights in listed if weights]
    return (f"{name_list([name for name, _, _ in listed])}; ImageNet weights (--pretrained) "
            f"for {name_list(weighted, 'and')}")


def weights_help() -> str:
    """Where ``--pretrained`` finds each model's ImageNet weights, model by model."""
    by_source: dict[str, list[str]] = {}
    for name, _, weights in _listed():
        if weights:
            by_source.setdefault(weights, []).append(name)
    return ", or ".join(f"{name_list(names, 'and')} {source}"
                        for source, names in by_source.items())


def recipe_help(setting: str) -> str:
    """What the recipes give ``setting`` (a `Recipe` field), model by model: "1.0 for fastres,
    ..., else 0.2" (else: the generic recipe's), then where starting from trained weights
    changes it."""
    def values(fine_tuning: bool) -> str:
        by_value: dict[Any, list[str]] = {}
        for name, recipe, _ in _listed():
            value = getattr(recipe.for_start(fine_tuning), setting)
            if fine_tuning and value == getattr(recipe, setting):
                continue
            by_value.setdefault(value, []).append(name)
        generic = getattr(GENERIC, setting)
        return ", ".join(f"{value} for {name_list(names, 'and')}"
                         for value, names in by_value.items() if fine_tuning or value != generic)

    own, tuned = values(False), values(True)
    text = f"{own}, else {getattr(GENERIC, setting)}" if own else str(getattr(GENERIC, setting))
    return f"{text}; from trained weights {tuned}" if tuned else text
