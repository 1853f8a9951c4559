"""B6: transfer learning on a small dataset, from scratch against ``--init``, in one run.

    python benchmarks/b6_transfer.py --data ../shared/datasets [--seeds 3] [--epochs 16]

1. source: ``descend train`` on CIFAR-10 classes 0-4 (airplane ... deer; 25,000 training
   images, validated on their 5,000 test images), once, the default recipe at 32x32.
2. target, per seed: 100 training images per class of classes 5-9 (dog ... truck), drawn
   from the CIFAR-10 training split with that seed; their 5,000 test images evaluate.
   - scratch: ``descend train`` with the defaults (a fitting batch size is picked);
   - init: the same plus ``--init SOURCE_RUN`` (backbone kept, new 5-class head);
   - init + freeze: the same plus ``--freeze-epochs 1``.
   Every variant trains the same number of epochs; the figure is the test accuracy after the
   last epoch (not the best epoch, which would choose on the test images).

The image folders are written under ``--work`` (copies of the PNG files). Wall times are the
whole ``train`` call (decode of a first run included, so the source's decode is reported apart).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SOURCE, TARGET = CLASSES[:5], CLASSES[5:]


def copy_split(src: Path, dst: Path, classes: list[str], per_class: int | None,
               rng: random.Random | None) -> None:
    for c in classes:
        files = sorted((src / c).glob("*.png"))
        if per_class is not None:
            assert rng is not None
            files = rng.sample(files, per_class)
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, dst / c / f.name)


def last_test_acc(result: object) -> float:
    return result.history[-1]["val_acc"]  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding cifar10/train, test")
    p.add_argument("--work", type=Path, default=Path("/tmp/descend-b6"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=16, help="epochs of every target run")
    p.add_argument("--per-class", type=int, default=100)
    args = p.parse_args()

    import descend

    print(describe())
    cifar = args.data / "cifar10"
    shutil.rmtree(args.work, ignore_errors=True)
    copy_split(cifar / "train", args.work / "source" / "train", SOURCE, None, None)
    copy_split(cifar / "test", args.work / "source" / "test", SOURCE, None, None)
    common = dict(image_size=32, progress=False, download=False, overwrite=True)

    start = time.perf_counter()
    source = descend.train(data=f"imagefolder:{args.work / 'source'}",
                           out=str(args.work / "runs" / "source"), **common)
    source_s = time.perf_counter() - start
    train_s = sum(r["seconds"] for r in source.history)
    print(f"source (classes 0-4, 25,000 images, 8 epochs): test acc "
          f"{last_test_acc(source):.4f}, {source_s:.0f} s wall ({train_s:.0f} s training)")

    variants = {"scratch": {}, "init": {"init": str(source.run_dir)},
                "init + freeze 1": {"init": str(source.run_dir), "freeze_epochs": 1}}
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for seed in range(args.seeds):
        target = args.work / f"target-{seed}"
        copy_split(cifar / "train", target / "train", TARGET, args.per_class,
                   random.Random(seed))
        copy_split(cifar / "test", target / "test", TARGET, None, None)
        for name, extra in variants.items():
            start = time.perf_counter()
            r = descend.train(data=f"imagefolder:{target}", epochs=args.epochs, seed=seed,
                              out=str(args.work / "runs" / f"{name}-{seed}"), **common, **extra)
            wall = time.perf_counter() - start
            results[name].append((last_test_acc(r), wall))
            print(f"seed {seed} {name:<16} test acc {last_test_acc(r):.4f}  {wall:.1f} s")

    print(f"\n{args.per_class} training images per class of classes 5-9, {args.epochs} epochs, "
          f"{args.seeds} seeds (test accuracy after the last epoch on their 5,000 test images)")
    print(f"{'variant':<18}{'mean acc':>10}{'spread (min-max)':>20}{'mean wall s':>13}")
    for name, rows in results.items():
        accs = [a for a, _ in rows]
        walls = [w for _, w in rows]
        print(f"{name:<18}{statistics.mean(accs):>10.4f}{min(accs):>10.4f}-{max(accs):.4f}"
              f"{statistics.mean(walls):>13.1f}")


if __name__ == "__main__":
    main()
