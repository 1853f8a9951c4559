"""B16: a time budget while the load comes and goes.

    DESCEND_DATA=../shared/datasets python benchmarks/b16_budget_load.py [--repeats 2]
        [--data mnist] [--budget 20s] [--pin]

Each repeat runs `descend train --data D --time-budget B` twice: quiet, then while a second
process (a Python busy loop, pinned to the last core with ``--pin``) takes one core for the
middle third of the budget. The budget starts at the run's first probe, after start-up and
data loading: the quiet run's lead (its wall time less the budget it spent) places the load.
It prints, per run, the budget used (the run's ``time_budget.spent`` over its seconds), the
final accuracy, how often the closed loop checked and how many revisions it made, and the
machine's load average before the run (other programs on a shared machine show there). The
descend measured is the one `python -m descend` finds from the working directory: run it from
another checkout to measure that one's code.
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="mnist")
    p.add_argument("--budget", default="20s")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--pin", action="store_true", help="pin the busy loop to the last core")
    p.add_argument("--out", default="/tmp/descend-b16")
    a = p.parse_args()
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
