"""B11: a run sized to its data. The default length against the old fixed 8 epochs on a small set.

    python benchmarks/b11_sized_runs.py [--data cifar10-sample] [--seeds 2]

For each seed, `descend train --data D` with every setting at its default (the plan sizes a
small dataset's run to `plan.MIN_STEPS` steps, within `plan.SIZED_SECONDS`), and the same with
``--epochs 8`` (the default before). Prints test accuracy and wall seconds of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from b3_time_to_accuracy import descend  # noqa: E402
from machine import describe  # noqa: E402
from results import final_test_acc  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="cifar10-sample")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", default="/tmp/descend-b11")
    a = p.parse_args()
    print(describe(), flush=True)
    ways = {"8 epochs (before)": ["--epochs", "8"], "sized by the plan": []}
    table = {}
    for name, flags in ways.items():
        accs, walls, epochs = [], [], []
        for seed in range(a.seeds):
            result, wall = descend(["--data", a.data, "--seed", str(seed), "--out",
                                    f"{a.out}/{seed}", "--overwrite", *flags])
            accs.append(final_test_acc(result))
            walls.append(wall)
            epochs.append(len(result["history"]))  # type: ignore[arg-type]
            print(f"  {name} seed {seed}: {epochs[-1]} epochs, test acc {accs[-1]:.4f}, "
                  f"{wall:.0f} s wall", flush=True)
        table[name] = (statistics.mean(accs), min(accs), max(accs), statistics.mean(walls),
                       epochs[0])
    print(f"\n{'length':<20}{'epochs':>7}{'mean acc':>10}{'min':>8}{'max':>8}{'wall s':>8}"
          f"  ({a.seeds} seeds, {a.data})")
    for name, (mean, low, high, wall, n) in table.items():
        print(f"{name:<20}{n:>7}{mean:>10.4f}{low:>8.4f}{high:>8.4f}{wall:>8.0f}")


if __name__ == "__main__":
    main()
