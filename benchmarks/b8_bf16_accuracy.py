"""B8: does bfloat16 autocast cost accuracy? The same recipe and seeds in float32 and under
bfloat16 autocast, side by side in one run.

    python benchmarks/b8_bf16_accuracy.py --data ../shared/datasets [--dataset mnist]
        [--epochs 2] [--seeds 2] [--extra "--model-arg widths=[8,16,32]"]

`descend train` turns bfloat16 on by itself only on a CPU with native bfloat16 where it
measurably pays; here it is forced on (`choose_amp` replaced), so the comparison also runs on a
CPU without native bfloat16, where the bfloat16 run is emulated and slow: read its accuracy,
not its time, there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

import descend.training.trainer as trainer  # noqa: E402
from descend.cli.flags import config_values  # noqa: E402
from descend.cli.main import build_parser  # noqa: E402
from descend.config import TrainConfig  # noqa: E402


def run(args: list[str], bf16: bool) -> tuple[float, float]:
    """(final test accuracy, training seconds) of one run, bfloat16 forced on or off."""
    trainer.choose_amp = lambda *a, **k: bf16  # type: ignore[assignment]
    ns = build_parser().parse_args(["train", *args])
    cfg = TrainConfig.from_dict(config_values(ns), source="flags")
    result = trainer.train(cfg)
    return result.history[-1]["val_acc"], sum(r["seconds"] for r in result.history)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/datasets")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--extra", default="--model-arg widths=[8,16,32]")
    p.add_argument("--out", default="/tmp/descend-b8")
    a = p.parse_args()
    print(describe(), flush=True)
    rows: dict[str, list[tuple[float, float]]] = {"float32": [], "bfloat16 autocast": []}
    for seed in range(a.seeds):
        for name in rows:
            start = time.perf_counter()
            acc, secs = run(["--data", a.dataset, "--data-root", str(Path(a.data).resolve()),
                             "--epochs", str(a.epochs), "--seed", str(seed), "--no-progress",
                             "--out", f"{a.out}/{name[:4]}-{seed}", "--overwrite",
                             *a.extra.split()], name != "float32")
            rows[name].append((acc, secs))
            print(f"seed {seed} {name}: test acc {acc:.4f}, {secs:.0f} s training "
                  f"({time.perf_counter() - start:.0f} s wall)", flush=True)
    print(f"\n{'precision':<20}{'mean acc':>10}{'accs':>24}{'train s':>9}")
    for name, r in rows.items():
        accs = [acc for acc, _ in r]
        print(f"{name:<20}{statistics.mean(accs):>10.4f}{str([round(x, 4) for x in accs]):>24}"
              f"{statistics.mean(s for _, s in r):>9.0f}")


if __name__ == "__main__":
    main()
