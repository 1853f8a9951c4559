"""The train/val split of crawled images: stratified exactly, deterministic, decided once.

The k-th image kept for a class (k = 0, 1, ...) goes to val when
floor((k + 1) f + o) > floor(k f + o), with f the val fraction and o an offset in [0, 1 - f)
drawn from sha256(seed, class). Every class, and every prefix of a class (a crawl stopped
halfway), then has floor(n f + o) val images out of n: the fraction to within one image, not
the binomial scatter of a coin per image. The first image of a class always goes to train
(o < 1 - f), so a class with one image is never val-only. The split of a kept image is written
to the manifest and never recomputed, so a resumed crawl cannot move an image between splits.
"""

from __future__ import annotations

import hashlib
import math


def class_offset(seed: int, class_name: str, val_fraction: float) -> float:
    """The per-class phase o in [0, 1 - f): the seed picks which positions are val."""
    digest = hashlib.sha256(f"{seed}\0{class_name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return u * (1.0 - val_fraction)


def split_for(index: int, val_fraction: float, offset: float) -> str:
    """"train" or "val" for the image kept at position ``index`` of its class."""
    if val_fraction <= 0:
        return "train"
    before = math.floor(index * val_fraction + offset)
    after = math.floor((index + 1) * val_fraction + offset)
    return "val" if after > before else "train"
