"""B16: a time budget while the load comes and goes.

    DESCEND_DATA=../shared/datasets python benchmarks/b16_budget_load.py [--repeats 2]
        [--data mnist] [--budget 20s] [--pin]
    python benchmarks/b16_budget_load.py --simulate

Each repeat runs `descend train --data D --time-budget B` twice: quiet, then while a second
process (a Python busy loop, pinned to the last core with ``--pin``) takes one core for the
middle third of the budget. The budget starts at the run's first probe, after start-up and
data loading: the quiet run's lead (its wall time less the budget it spent) places the load.
It prints, per run, the budget used (the run's ``time_budget.spent`` over its seconds), the
final accuracy, how often the closed loop checked and how many revisions it made, and the
machine's load average before the run (other programs on a shared machine show there). The
descend measured is the one `python -m descend` finds from the working directory: run it from
another checkout to measure that one's code.

``--simulate`` runs no training: the closed loop (`TimeBudget`) on a clock of its own, as
tests/support/budget_simulation.py drives it for the tests (a 20 s budget of MNIST-like
234-step epochs), under step-time patterns, and prints the budget used and the revisions for
each window length (`budget.CHECK_EVERY`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from results import final_test_acc  # noqa: E402

SPIN = "while True: pass"


def load_between(start: float, stop: float, pin: bool) -> threading.Thread:
    """A thread that runs a busy loop from ``start`` to ``stop`` (time.monotonic())."""
    def spin() -> None:
        time.sleep(max(0.0, start - time.monotonic()))
        cmd = [sys.executable, "-c", SPIN]
        if pin and (cores := os.cpu_count() or 1) > 1:
            cmd = ["taskset", "-c", str(cores - 1), *cmd]
        busy = subprocess.Popen(cmd)
        try:
            time.sleep(max(0.0, stop - time.monotonic()))
        finally:
            busy.kill()
            busy.wait()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return thread


def train(data: str, budget: str, out: Path, load: tuple[float, float] | None,
          pin: bool) -> dict[str, Any]:
    """One `descend train --json` run; ``load``: the busy loop's (start, stop) in seconds after
    the command starts."""
    cmd = [sys.executable, "-m", "descend", "train", "--data", data, "--time-budget", budget,
           "--no-progress", "--json", "--out", str(out), "--overwrite"]
    before = os.getloadavg()[0]
    began = time.monotonic()
    spinner = load_between(began + load[0], began + load[1], pin) if load else None
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - began
    if spinner:
        spinner.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    report = result["time_budget"]
    return {"used": report["spent"] / report["seconds"], "spent": report["spent"],
            "seconds": report["seconds"],
            "acc": final_test_acc(result), "checks": report.get("checks"),
            "revisions": len(report["revisions"]), "wall": wall, "load_before": before,
            "epochs": len(result["history"]), "val_images": report.get("val_images")}


PATTERNS = {  # step seconds at budget time t: 30 ms quiet
    "quiet": lambda t: 0.03,
    "3x slower, middle third": lambda t: 0.09 if 20 / 3 <= t < 40 / 3 else 0.03,
    "2x slower, first half": lambda t: 0.06 if t < 10 else 0.03,
    "2x slower from 5 s": lambda t: 0.06 if t >= 5 else 0.03,
    "3x slower from 16 s": lambda t: 0.09 if t >= 16 else 0.03,
    "3x slower, 12-16 s": lambda t: 0.09 if 12 <= t < 16 else 0.03,
}


def simulate() -> None:
    """The budget used (and revisions) per step-time pattern and window length."""
    import random

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from descend.training.fitting import budget
    from tests.support.budget_simulation import simulate as run

    jitter = "0.7-1.5x at random"
    print(f"{'window':<8}" + "".join(f"{name:>24}" for name in [*PATTERNS, jitter]))
    for every in (0.005, 0.01, 0.02, 0.05, 0.1):
        budget.CHECK_EVERY = every
        rng = random.Random(0)
        patterns = [*PATTERNS.values(), lambda t, rng=rng: 0.03 * rng.uniform(0.7, 1.5)]
        cells = []
        for pattern in patterns:
            sim = run(pattern)
            cells.append(f"{sim.spent / 20:.1%} ({len(sim.run.lines)})")
        print(f"{every:<8.1%}" + "".join(f"{c:>24}" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="mnist")
    p.add_argument("--budget", default="20s")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--pin", action="store_true", help="pin the busy loop to the last core")
    p.add_argument("--out", default="/tmp/descend-b16")
    p.add_argument("--simulate", action="store_true", help="the closed loop on a simulated "
                   "clock, per window length (no training)")
    a = p.parse_args()
    if a.simulate:
        simulate()
        return
    print(describe(), flush=True)
    rows: dict[str, list[dict[str, Any]]] = {"quiet": [], "loaded": []}
    for r in range(a.repeats):
        quiet = train(a.data, a.budget, Path(a.out) / "quiet", None, a.pin)
        lead, seconds = max(0.0, quiet["wall"] - quiet["spent"]), quiet["seconds"]
        window = (lead + seconds / 3, lead + 2 * seconds / 3)
        loaded = train(a.data, a.budget, Path(a.out) / "loaded", window, a.pin)
        for name, row in (("quiet", quiet), ("loaded", loaded)):
            rows[name].append(row)
            extra = (f", busy loop {window[0]:.1f}-{window[1]:.1f} s after the start"
                     if name == "loaded" else "")
            print(f"repeat {r + 1} {name}: budget used {row['used']:.1%} ({row['spent']:.1f} s "
                  f"of {seconds:g}), accuracy {row['acc']:.2%}, {row['epochs']} epoch(s), "
                  f"{row['checks']} checks, {row['revisions']} revisions, whole command "
                  f"{row['wall']:.1f} s, load average before {row['load_before']:.2f}{extra}",
                  flush=True)
    print(f"\n{'run':<8}{'budget used (min, median)':>28}{'accuracy (median)':>20}")
    for name, got in rows.items():
        used = [g["used"] for g in got]
        print(f"{name:<8}{min(used):>16.1%}{statistics.median(used):>12.1%}"
              f"{statistics.median(g['acc'] for g in got):>20.2%}")


if __name__ == "__main__":
    main()
