"""Build descend/data/sample/cifar10-sample.npz from the CIFAR-10 class folders.

Usage: python scripts/make_cifar10_sample.py ../shared/datasets/cifar10

Takes the first N files (sorted by name) of every class in train/ and test/, so the sample is
the same every time, and stores each split as one lossless PNG strip (PNG's filters compress
CIFAR's pixels about a quarter better than zlib on raw bytes) plus the labels.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PER_CLASS = {"train": 300, "test": 80}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def main(src: str) -> None:
    root = Path(src)
    arrays: dict[str, np.ndarray] = {"classes": np.array(CLASSES)}
    for split, n in PER_CLASS.items():
        tiles, labels = [], []
        for label, name in enumerate(CLASSES):
            for f in sorted((root / split / name).glob("*.png"))[:n]:
                tiles.append(np.asarray(Image.open(f).convert("RGB")))
                labels.append(label)
        strip = np.concatenate(tiles, axis=0)  # (32 * count, 32, 3)
        buf = io.BytesIO()
        Image.fromarray(strip).save(buf, format="PNG", optimize=True, compress_level=9)
        arrays[f"{split}_png"] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.uint8)
    out = Path(__file__).resolve().parents[1] / "descend" / "data" / "sample" / "cifar10-sample.npz"
    np.savez(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
