"""B10: training speed on a machine that is not idle, by OpenMP wait policy.

    python benchmarks/b10_contention.py [--rounds 2] [--data cifar10-sample]

Each round runs `descend train --epochs 3` four ways, alternating: idle or with one process
spinning on a core (what a user's other work does to a 2-core machine), and with OpenMP's
default wait policy or ``OMP_WAIT_POLICY=PASSIVE`` (threads that sleep instead of spinning
while they wait for each other). It prints the median images per second of the epochs after
the first, per way, and the ratios.
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


def speed(data: str, policy: str | None, busy: bool, out: Path) -> float:
    """Median images/s of epochs 2 and 3 of one fresh `descend train`."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        proc = subprocess.run([sys.executable, "-m", "descend", "train", "--data", data,
                               "--epochs", "3", "--no-progress", "--json", "--out", str(out),
                               "--overwrite"], capture_output=True, text=True, env=env)
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
    ways = [(busy, policy) for busy in (False, True) for policy in (None, "PASSIVE")]
    got: dict[tuple[bool, str | None], list[float]] = {w: [] for w in ways}
    for r in range(a.rounds):
        for busy, policy in ways:
            ips = speed(a.data, policy, busy, Path(a.out) / "run")
            got[(busy, policy)].append(ips)
            print(f"round {r + 1}: {'busy' if busy else 'idle'} core, OMP_WAIT_POLICY="
                  f"{policy or 'default'}: {ips:.0f} img/s", flush=True)
    med = {w: statistics.median(v) for w, v in got.items()}
    print(f"\n{'machine':<10}{'default':>10}{'PASSIVE':>10}{'PASSIVE/default':>17}")
    for busy in (False, True):
        d, q = med[(busy, None)], med[(busy, "PASSIVE")]
        print(f"{'busy' if busy else 'idle':<10}{d:>10.0f}{q:>10.0f}{q / d:>17.2f}x")


if __name__ == "__main__":
    main()
