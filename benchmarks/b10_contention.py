"""B10: training speed on a machine that is not idle, by thread setting.

    python benchmarks/b10_contention.py [--rounds 2] [--data cifar10-sample]

Each round runs `descend train --epochs 3` several ways, alternating: idle or with one process
spinning on a core (what a user's other work does to a 2-core machine), and with one thread
per core (``--threads`` of the core count), half of them, ``OMP_WAIT_POLICY=PASSIVE`` (threads
that sleep instead of spinning while they wait for each other) or descend's default (the plan's
thread probe). It prints the median images per second of the epochs after the first, per way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

SPIN = "while True: pass"


WAYS = {"default (probe)": [], "all threads": ["--threads", str(os.cpu_count())],
        "half the threads": ["--threads", str(max(1, (os.cpu_count() or 2) // 2))],
        "OMP_WAIT_POLICY=PASSIVE": ["--threads", str(os.cpu_count())]}


def speed(data: str, way: str, busy: bool, out: Path) -> float:
    """Median images/s of epochs 2 and 3 of one fresh `descend train`."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if "PASSIVE" in way:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        proc = subprocess.run([sys.executable, "-m", "descend", "train", "--data", data,
                               "--epochs", "3", "--no-progress", "--json", "--out", str(out),
                               "--overwrite", *WAYS[way]], capture_output=True, text=True,
                              env=env)
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    history = json.loads(proc.stdout[proc.stdout.index("{"):])["history"]
    return statistics.median(r["images_per_sec"] for r in history[1:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", default="cifar10-sample")
    p.add_argument("--out", default="/tmp/descend-b10")
    a = p.parse_args()
    print(describe(), flush=True)
    got: dict[tuple[bool, str], list[float]] = {(b, w): [] for b in (False, True) for w in WAYS}
    for r in range(a.rounds):
        for busy, way in got:
            ips = speed(a.data, way, busy, Path(a.out) / "run")
            got[(busy, way)].append(ips)
            print(f"round {r + 1}: {'busy' if busy else 'idle'} core, {way}: {ips:.0f} img/s",
                  flush=True)
    print(f"\n{'way':<26}{'idle img/s':>12}{'busy img/s':>12}")
    for way in WAYS:
        idle, busy = (statistics.median(got[(b, way)]) for b in (False, True))
        print(f"{way:<26}{idle:>12.0f}{busy:>12.0f}")


if __name__ == "__main__":
    main()
