"""B17: the time a budgeted run spends planning, on a machine with no probe figures and on one
that remembers them (issue 28).

    python benchmarks/b17_planning.py [--data cifar10] [--budget 1m] [--out /tmp/descend-b17]

Three runs of ``descend train --data DATA --time-budget BUDGET`` share one fresh cache dir
(``DESCEND_CACHE``, where ``probes.json`` is kept): the first times its probes and remembers
them, the second plans from them, the third is given ``--reprobe``. For each it prints the
seconds of its probes (the plan's ``probe figures in X s`` line: from the first probe to the
plan, which the budget counts), what the line says came from memory, the load other programs
put on the machine just before (cores busy, `remembered.busy_elsewhere` over a second), the
epochs trained, the budget spent, the test accuracy (CIFAR-10 validates on its test split)
and the whole command's seconds. The datasets are read from ``DESCEND_DATA`` (default
../shared/datasets); run it from the repository root (``python -m descend`` is this
checkout's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from descend.training.planning.remembered import busy_elsewhere  # noqa: E402

RUNS = (("first (no figures)", []), ("second (remembered)", []), ("--reprobe", ["--reprobe"]))


def one_run(data: str, budget: str, out: Path, env: dict[str, str], extra: list[str]
            ) -> dict[str, object]:
    """One `descend train --json`: its planning line and figures."""
    load = busy_elsewhere(1.0)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "descend", "train", "--data", data,
                           "--time-budget", budget, "--no-progress", "--json", "--out",
                           str(out), "--overwrite", *extra], capture_output=True, text=True,
                          env=env)
    took = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    line = next(li for li in proc.stderr.splitlines() if li.startswith("probe figures in"))
    widths = next((li.split(":")[0] for li in proc.stderr.splitlines()
                   if " widths [" in li), "")
    planned = re.search(r"probe figures in ([\d.]+) s", line)
    assert planned is not None
    kept = result["time_budget"] or {}
    (out / "stderr.log").write_text(proc.stderr)
    # CIFAR-10 validates on its test split: the best (the last) validation is the test accuracy.
    accuracy = result["test_accuracy"] or result["best_metric"]
    return {"load": load, "planning": float(planned.group(1)), "line": line, "widths": widths,
            "epochs": len(result["history"]), "spent": kept.get("spent") or 0.0,
            "seconds": kept.get("seconds") or 0.0, "test": accuracy, "command": took}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="cifar10")
    p.add_argument("--budget", default="1m")
    p.add_argument("--out", default="/tmp/descend-b17")
    a = p.parse_args()
    print(describe(), flush=True)
    env = dict(os.environ)
    env.setdefault("DESCEND_DATA", str(Path(__file__).resolve().parents[1].parent / "shared"
                                       / "datasets"))
    env["DESCEND_CACHE"] = tempfile.mkdtemp(prefix="descend-b17-cache-")
    print(f"cache dir (fresh): {env['DESCEND_CACHE']}", flush=True)
    rows = []
    for i, (name, extra) in enumerate(RUNS):
        row = one_run(a.data, a.budget, Path(a.out) / f"run{i}", env, extra)
        rows.append((name, row))
        print(f"\n{name}: other programs kept {row['load']:.2f} cores busy before it\n"
              f"  {row['line']}\n  {row['widths']}; {row['epochs']} epoch(s), "
              f"{row['spent']:.1f} s of the {row['seconds']:.0f} s budget spent, test accuracy "
              f"{row['test']:.4f}, whole command {row['command']:.1f} s", flush=True)
    first = rows[0][1]["planning"]
    print(f"\n{'run':<22}{'load':>6}{'planning s':>12}{'vs first':>10}{'epochs':>8}"
          f"{'test acc':>10}{'command s':>11}")
    for name, row in rows:
        print(f"{name:<22}{row['load']:>6.2f}{row['planning']:>12.1f}"
              f"{row['planning'] / first:>10.2f}{row['epochs']:>8}{row['test']:>10.4f}"
              f"{row['command']:>11.1f}")


if __name__ == "__main__":
    main()
