"""The recipes: what a run uses for the settings the user left open.

`descend train` with no model named trains `fastres` (descend/models/fastres.py) with the
recipe below. Every value fills a setting only where the user gave none, and says why. The
model-side choices of the recipe (patch whitening, fixed batch-norm scale, residual groups,
scaled logits, pool-before-norm) live in the model; the choices here are the training side.
"""

from __future__ import annotations

from typing import Any

from descend.config import TrainConfig
from descend.data.augment import Flip, RandomCrop, parse_augment

DEFAULT_MODEL = "fastres"

# Settings every model shares unless its recipe says otherwise.
GENERIC: dict[str, Any] = {
    "label_smoothing": 0.1,  # cheap regularisation, worth ~1% on CIFAR-10 (ResNet recipes)
    "augment": "crop:4,hflip",  # random 4-pixel shifts and mirroring: the two that pay on
                                # small images
}

RECIPES: dict[str, dict[str, Any]] = {
    "fastres": {
        # airbench's value for its runs of about ten epochs (not re-tuned here): smoothing
        # keeps the scaled logits from chasing certainty on images they already get right.
        "label_smoothing": 0.2,
        # Shifts of 2 pixels, not 4: a short run has no time to learn from heavy augmentation
        # (airbench translates by 2).
        "augment": "crop:2,hflip",
    },
}

# The peak learning rate at batch 256 (scaled linearly with the batch), per model. fastres
# divides its logits by 9, so its weights see smaller gradients: one epoch of CIFAR-10 reached
# 66.6% at 0.2, 72.4% at 0.8, 72.3% at 2 and 72.0% at 5 (widths 16-32-64, one-cycle), and
# four epochs 83.9% at 1.0 against 83.0% at 0.4.
PEAK_LR = {"fastres": 1.0}
GENERIC_PEAK_LR = 0.2  # one-cycle's peak for the ResNet-style models at batch 256


def peak_lr(model: str | None, batch_size: int) -> float:
    """The default learning rate: the model's peak at batch 256, times batch / 256."""
    return PEAK_LR.get(model or DEFAULT_MODEL, GENERIC_PEAK_LR) * batch_size / 256


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
        # Test-time mirroring only where training mirrored, and shifts only where it also
        # shifted: the test images then come from the distribution the model was trained on.
        changes["model_args"] = {**cfg.model_args, "tta": tta_level(augment)}
    return cfg.updated(**changes)


def tta_level(augment: str | None) -> int:
    """fastres's test-time augmentation for a training ``--augment``: 2 where it mirrors and
    shifts images (random crops of a padded image), 1 where it mirrors alone, else 0."""
    if not mirrors(augment):
        return 0
    assert augment is not None
    shifts = any(isinstance(op, RandomCrop) and op.padding for op in parse_augment(augment).ops)
    return 2 if shifts else 1


def mirrors(augment: str | None) -> bool:
    """Whether an ``--augment`` spec mirrors images left-right."""
    if not augment:
        return False
    return any(isinstance(op, Flip) and op.dim == 3 for op in parse_augment(augment).ops)
