"""B14: `--lr auto` (lr-find's suggestion) against each model's recipe rate (issue 20).

The same short run of each model on the built-in sample, once at the recipe's learning rate and
once with ``--lr auto``; the figure is the best validation accuracy (the sample validates on its
test split) and the rate each used.

    python benchmarks/b14_lr_auto.py [--epochs 6] [--models fastres,cnn,mlp,tv:resnet18]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import describe  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--models", default="fastres,cnn,mlp,tv:resnet18")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(describe(), flush=True)
    import descend

    rows = []
    for model in args.models.split(","):
        for lr in (None, "auto"):
            with tempfile.TemporaryDirectory() as out:
                result = descend.train(data="cifar10-sample", model=model, epochs=args.epochs,
                                       lr=lr, seed=args.seed, progress=False, out=out,
                                       overwrite=True)
                used = json.loads((Path(out) / "config.json").read_text())["lr"]
            rows.append({"model": model, "lr": "recipe" if lr is None else "auto",
                         "rate": used, "best_val_acc": round(result.best_metric or 0, 4)})
            print(json.dumps(rows[-1]), flush=True)
    print("| model | recipe rate | its accuracy | --lr auto rate | its accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for recipe, auto in zip(rows[::2], rows[1::2]):
        print(f"| {recipe['model']} | {recipe['rate']:.3g} | {recipe['best_val_acc']:.1%} | "
              f"{auto['rate']:.3g} | {auto['best_val_acc']:.1%} |")


if __name__ == "__main__":
    main()
