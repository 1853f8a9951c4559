"""B3: time to accuracy. `descend train` with a time budget, over several seeds, against targets.

    python benchmarks/b3_time_to_accuracy.py --data ../shared/datasets [--seeds 3]
        [--targets mnist-99.0,mnist-99.5,cifar10-90] [--include-long]
    python benchmarks/b3_time_to_accuracy.py --fixed 16-32-64:16,32-64-128:12 [--seeds 1]

Each target is (dataset, budget, accuracy): the run is `descend train --data D --time-budget B
--seed S` with every other setting at its default (the fastres recipe), and the target counts
as reached when the mean test accuracy over the seeds is at least the target. The decode step
is timed apart first (the runs read the decoded cache), and each run reports its training time
(the epochs, validation included), its wall time (start-up, data loading and the test pass
included) and its planned epochs.

GPU: `benchmarks/b3_gpu.py` times the same against airbench's train94 on one card.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from results import final_test_acc  # noqa: E402

TARGETS = {  # name: (dataset, time budget, test accuracy to reach)
    "mnist-99.0": ("mnist", "20s", 0.990),
    "mnist-99.5": ("mnist", "2m", 0.995),
    "cifar10-90": ("cifar10", "5m", 0.90),
    "cifar10-93-5m": ("cifar10", "5m", 0.93),  # issue 28's bfloat16 targets
    "cifar10-94-10m": ("cifar10", "10m", 0.94),
    "cifar10-94": ("cifar10", "30m", 0.94),  # long: only with --include-long
}
DEFAULT = ("mnist-99.0", "mnist-99.5", "cifar10-90")  # without --targets


def descend(args: list[str]) -> tuple[dict[str, object], float]:
    """Run `descend train ARGS --json`; (its JSON result, wall seconds)."""
    cmd = [sys.executable, "-m", "descend", "train", *args, "--no-progress", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    plan = [line for line in proc.stderr.splitlines() if "time budget" in line]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    result["plan"] = plan
    return result, wall


def decode_time(data: str, root: Path) -> float:
    """Seconds of `descend data info`, which decodes ``data`` into the cache (once)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "descend", "data", "info", "--data", data,
                    "--data-root", str(root)], capture_output=True, text=True, check=False)
    return time.perf_counter() - start


def seed_runs(seeds: int, args_of: Callable[[int], list[str]]
              ) -> Iterator[tuple[int, dict[str, object], float, float, float]]:
    """One `descend train` per seed, as it ends: (seed, its JSON result, final test accuracy,
    seconds of training steps, wall seconds)."""
    for seed in range(seeds):
        result, wall = descend(args_of(seed))
        train_s = sum(r["seconds"] for r in result["history"])  # type: ignore[union-attr]
        yield seed, result, final_test_acc(result), train_s, wall


def fixed_recipes(spec: str, seeds: int, root: Path, out: Path, extra: list[str]) -> None:
    """Each fixed recipe (fastres WIDTHS for EPOCHS epochs, every other setting at its
    default, or as ``extra`` sets it) for ``seeds`` seeds: mean final test accuracy, training
    and wall seconds."""
    print(f"\n{'fixed recipe':<22}{'mean acc':>10}{'min':>8}{'max':>8}{'train s':>9}"
          f"{'wall s':>8}  ({seeds} seed(s))")
    for item in spec.split(","):
        widths, epochs = item.split(":")
        runs = list(seed_runs(seeds, lambda seed, widths=widths, epochs=epochs, item=item: [
            "--data", "cifar10", "--data-root", str(root), "--epochs", epochs, "--model-arg",
            f"widths=[{widths.replace('-', ',')}]", "--seed", str(seed), "--out",
            str(out / f"fixed-{item}-{seed}"), "--overwrite", *extra]))
        accs, trains, walls = ([r[i] for r in runs] for i in (2, 3, 4))
        print(f"{widths + ' x ' + epochs + ' epochs':<22}{statistics.mean(accs):>10.4f}"
              f"{min(accs):>8.4f}{max(accs):>8.4f}{statistics.mean(trains):>9.0f}"
              f"{statistics.mean(walls):>8.0f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/datasets")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--targets", default=",".join(DEFAULT), help=f"of {', '.join(TARGETS)}")
    p.add_argument("--include-long", action="store_true", help="also CIFAR-10 94%% in 30 min")
    p.add_argument("--out", default="/tmp/descend-b3")
    p.add_argument("--extra", default="", help="extra train flags for every run, e.g. "
                   "'--model-arg widths=[16,32,64]'")
    p.add_argument("--fixed", default="", help="instead of the targets: fixed CIFAR-10 "
                   "recipes WIDTHS:EPOCHS, e.g. '16-32-64:16,32-64-128:12' (no budget), to "
                   "compare with what --time-budget chose")
    a = p.parse_args()
    print(describe(), flush=True)
    root, out = Path(a.data).resolve(), Path(a.out)
    if a.fixed:
        fixed_recipes(a.fixed, a.seeds, root, out, a.extra.split())
        return
    names = a.targets.split(",") + (["cifar10-94"] if a.include_long else [])
    rows = []
    for data in dict.fromkeys(TARGETS[n][0] for n in names):
        print(f"{data}: decode and cache (apart from the budget): "
              f"{decode_time(data, root):.1f} s", flush=True)
    for name in names:
        data, budget, target = TARGETS[name]
        accs, trains, walls, used = [], [], [], []

        def args_of(seed: int, name: str = name, data: str = data, budget: str = budget
                    ) -> list[str]:
            return ["--data", data, "--data-root", str(root), "--time-budget", budget, "--seed",
                    str(seed), "--out", str(out / f"{name}-{seed}"), "--overwrite",
                    *a.extra.split()]

        for seed, result, acc, train_s, wall in seed_runs(a.seeds, args_of):
            spent = budget_use(result)
            accs.append(acc)
            trains.append(train_s)
            walls.append(wall)
            used.append(spent["share"])
            print(f"  {name} seed {seed}: test acc {acc:.4f} after "
                  f"{len(result['history'])} epochs ({train_s:.0f} s training steps, "  # type: ignore[arg-type]
                  f"{spent['spent']:.0f} s of the budget spent ({100 * spent['share']:.1f}%), "
                  f"{wall:.0f} s wall); probe {1000 * spent['probe']:.0f} ms a step, the run "
                  f"{1000 * spent['run']:.0f} ms (probe error {spent['error']:+.1f}%), "
                  f"{spent['revisions']} revision(s)", flush=True)
        mean = statistics.mean(accs)
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append((name, budget, target, mean, spread, min(accs), max(accs),
                     statistics.mean(trains), statistics.mean(walls), mean >= target,
                     min(used), max(used)))
    print(f"\n{'target':<12}{'budget':>7}{'goal':>7}{'mean acc':>10}{'sd':>7}{'min':>8}"
          f"{'max':>8}{'train s':>9}{'wall s':>8}{'budget used':>14}  reached "
          f"({a.seeds} seeds)")
    for r in rows:
        print(f"{r[0]:<12}{r[1]:>7}{r[2]:>7.3f}{r[3]:>10.4f}{r[4]:>7.4f}{r[5]:>8.4f}{r[6]:>8.4f}"
              f"{r[7]:>9.0f}{r[8]:>8.0f}{f'{100 * r[10]:.1f}-{100 * r[11]:.1f}%':>14}  "
              f"{'yes' if r[9] else 'no'}")


def budget_use(result: dict[str, Any]) -> dict[str, float]:
    """The share of the budget a run spent (probes, training and validation: the run's own
    count), and its probe's step against the median of its epochs' steps (the error in %)."""
    kept = result["time_budget"]
    return {"spent": kept["spent"], "share": kept["spent"] / kept["seconds"],
            "probe": kept["probe_step"], "run": kept["run_step"],
            "error": 100 * (kept["probe_step"] - kept["run_step"]) / kept["run_step"],
            "revisions": len(kept["revisions"])}


if __name__ == "__main__":
    main()
