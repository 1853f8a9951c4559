"""The recipe step of the run plan: the settings the user left open, from the model's recipe.

Each model carries its own `Recipe` (descend/models: fastres's in fastres.py, torchvision's in
torchvision_models.py); this module applies it to a config. Every value fills a setting only
where the user gave none. The one rule that belongs to the data, not the model: images that
do not survive mirroring (the dataset's registry entry says which).
"""

from __future__ import annotations

from typing import Any

from descend.config import TrainConfig
from descend.data.augment import parse_augment
from descend.data.datasets import may_mirror
from descend.models import DEFAULT_MODEL, recipe_for


def peak_lr(model: str | None, batch_size: int, fine_tuning: bool = False) -> float:
    """The default learning rate: the recipe's peak at batch 256, times batch / 256."""
    return recipe_for(model or DEFAULT_MODEL, fine_tuning).peak_lr * batch_size / 256


def with_recipe(cfg: TrainConfig, data_name: str | None = None,
                fine_tuning: bool = False) -> TrainConfig:
    """``cfg`` with its model named and its recipe's values in the settings left open."""
    return cfg.updated(**recipe_changes(cfg, data_name, fine_tuning))


def recipe_changes(cfg: TrainConfig, data_name: str | None = None,
                   fine_tuning: bool = False) -> dict[str, Any]:
    """The settings `with_recipe` fills: the model named, the recipe's values in those left
    open."""
    model = cfg.model or DEFAULT_MODEL
    recipe = recipe_for(model, fine_tuning)
    fill: dict[str, Any] = {"label_smoothing": recipe.label_smoothing,
                            "weight_decay": recipe.weight_decay, "augment": recipe.augment}
    if data_name is not None and not may_mirror(data_name):
        # The dataset's images do not survive mirroring (`Dataset.mirrorable`): the recipe's
        # augmentation loses its flips there, and keeps the rest.
        fill["augment"] = unmirrored(recipe.augment)
    if cfg.cached_head is None:
        fill["cached_head"] = recipe.cached_head
        if recipe.cached_head and recipe.epochs is not None:
            fill["epochs"] = recipe.epochs
    changes: dict[str, Any] = {k: v for k, v in fill.items() if getattr(cfg, k) is None}
    changes["model"] = model
    if recipe.model_args is not None:
        follows = recipe.model_args(changes.get("augment", cfg.augment))
        changes["model_args"] = {**follows, **cfg.model_args}  # the user's win
    return changes


def unmirrored(augment: str) -> str:
    """``augment`` without its left-right flips ("none" if nothing is left)."""
    kept = [item for item in augment.split(",") if not parse_augment(item).mirrors()]
    return ",".join(kept) or "none"
