"""A stand-in for a folder of a user's own photos, built offline from CIFAR-10 (issue 25).

Real photos are scarce on the development machines, so B15 uses CIFAR-10 classes at photo size:
each 32x32 image is scaled to ``--size`` pixels (bicubic) and saved as a JPEG, in the layout of
the folder issue 25 measured (``train/<class>/`` and ``val/<class>/``; 245 and 153 images by
default, as in the issue's two-class folder). Images are drawn at random by ``--seed`` from
CIFAR-10's training split (train) and its test split (val), so two seeds give two folders.
The upscaled pictures are blurrier than real photos: accuracy here is a lower bound on what
the same recipe reaches on sharp photos.

    python benchmarks/photo_folder.py --data ../shared/datasets --out /tmp/photos \
        --classes cat,dog --train 245 --val 153 --seed 0
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image


def build(data: Path, out: Path, classes: list[str], train: int, val: int, size: int,
          seed: int) -> Path:
    """Write the folder; ``train`` and ``val`` are totals, shared evenly by the classes."""
    rng = random.Random(seed)
    for split, source, total in (("train", "train", train), ("val", "test", val)):
        for i, name in enumerate(classes):
            count = total // len(classes) + (1 if i < total % len(classes) else 0)
            files = sorted((data / "cifar10" / source / name).glob("*.png"))
            target = out / split / name
            target.mkdir(parents=True, exist_ok=True)
            for path in rng.sample(files, count):
                image = Image.open(path).convert("RGB").resize((size, size),
                                                                Image.Resampling.BICUBIC)
                image.save(target / f"{path.stem}.jpg", quality=92)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding cifar10/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--classes", default="cat,dog")
    parser.add_argument("--train", type=int, default=245)
    parser.add_argument("--val", type=int, default=153)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty: give a new folder")
    build(args.data, args.out, args.classes.split(","), args.train, args.val, args.size,
          args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
