"""The recipes: what a run uses for the settings the user left open.

`descend train` with no model named trains `fastres` (descend/models/fastres.py) with the
recipe below. Every value fills a setting only where the user gave none, and says why. The
model-side choices of the recipe (patch whitening, fixed batch-norm scale, residual groups,
scaled logits, pool-before-norm) live in the model; the choices here are the training side.
"""

from __future__ import annotations

from typing import Any

from descend.config import TrainConfig
from descend.data.augment import Flip, parse_augment

DEFAULT_MODEL = "fastres"

# Settings every model shares unless its recipe says otherwise.
GENERIC: dict[str, Any] = {
    "label_smoothing": 0.1,  # cheap regularisation, worth ~1% on CIFAR-10 (ResNet recipes)
    "augment": "crop:4,hflip",  # random 4-pixel shifts and mirroring: the two that pay on
                                # small images
}

RECIPES: dict[str, dict[str, Any]] = {
    "fastres": {
        # airbench's value: on runs of a few epochs a model is over-confident sooner, and
        # 0.2 measured better than 0.1 for it.
        "label_smoothing": 0.2,
        # Shifts of 2 pixels, not 4: a short run has no time to learn from heavy augmentation
        # (airbench translates by 2).
        "augment": "crop:2,hflip",
    },
}

# Datasets whose images do not survive mirroring: a mirrored digit is another shape.
NOT_MIRRORED = {"mnist": "crop:2"}


def with_recipe(cfg: TrainConfig, data_name: str | None = None) -> TrainConfig:
    """``cfg`` with its model named and the recipe's values in the settings left open."""
    model = cfg.model or DEFAULT_MODEL
    fill = {**GENERIC, **RECIPES.get(model, {})}
    if data_name in NOT_MIRRORED:
        fill["augment"] = NOT_MIRRORED[data_name]
    changes: dict[str, Any] = {k: v for k, v in fill.items() if getattr(cfg, k) is None}
    changes["model"] = model
    augment = changes.get("augment", cfg.augment)
    if model == "fastres" and "tta" not in cfg.model_args:
        # Test-time mirroring only where training mirrored: the test images then come from
        # the distribution the model was trained on.
        changes["model_args"] = {**cfg.model_args, "tta": mirrors(augment)}
    return cfg.updated(**changes)


def mirrors(augment: str | None) -> bool:
    """Whether an ``--augment`` spec mirrors images left-right."""
    if not augment:
        return False
    return any(isinstance(op, Flip) and op.dim == 3 for op in parse_augment(augment).ops)
