"""B9: glibc's allocator left as it is against `device.keep_freed_memory` (heap blocks kept).

    python benchmarks/b9_allocator.py [--rounds 3] [--steps 20]

Each measurement is a fresh process (the setting is process-wide and made once), timing
training steps of fastres (forward, backward, Nesterov SGD; batch 256, channels-last, random
CIFAR-sized batches) after 3 warm-up steps; the two allocator settings alternate, round after
round, and the medians are compared. bfloat16 rows only on a CPU with native bfloat16.
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
sys.path.insert(0, str(Path(__file__).parent.parent))
from machine import describe  # noqa: E402

WIDTHS = ((16, 32, 64), (64, 128, 256))


def child(widths: list[int], amp: bool, steps: int) -> None:
    """Print the median images/s of ``steps`` training steps."""
    import torch
    from steps import median_step_seconds

    from descend.models.fastres import FastRes
    from descend.runtime.device import keep_freed_memory

    tuned = keep_freed_memory()
    torch.manual_seed(0)
    model = FastRes(10, widths=widths, tta=True).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1,
                          momentum=0.9, nesterov=True)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last),
                torch.randint(0, 10, (256,)))

    seconds = median_step_seconds(model, opt, batch, amp, steps, warmup=3)
    print(json.dumps({"tuned": tuned, "images_per_s": 256 / seconds}))


def measure(widths: tuple[int, ...], amp: bool, steps: int, tuned: bool) -> float:
    env = {**os.environ, "DESCEND_MALLOC": "tuned" if tuned else "default"}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps([list(widths), amp]),
                          "--steps", str(steps)], capture_output=True, text=True, env=env,
                         check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["tuned"] == tuned, result
    return result["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--child")
    a = p.parse_args()
    if a.child:
        widths, amp = json.loads(a.child)
        child(widths, amp, a.steps)
        return
    from descend.runtime.precision import native_bf16

    print(describe(), flush=True)
    precisions = (False, True) if native_bf16() else (False,)
    print(f"{'fastres widths':<16}{'precision':<11}{'default img/s':>14}{'tuned img/s':>13}"
          f"{'speed-up':>10}   rounds ({a.rounds}, alternating)")
    for widths in WIDTHS:
        for amp in precisions:
            runs: dict[bool, list[float]] = {False: [], True: []}
            for r in range(a.rounds):
                for tuned in ((False, True) if r % 2 == 0 else (True, False)):
                    runs[tuned].append(measure(widths, amp, a.steps, tuned))
            base, tuned = statistics.median(runs[False]), statistics.median(runs[True])
            print(f"{'-'.join(map(str, widths)):<16}{'bf16' if amp else 'float32':<11}"
                  f"{base:>14.0f}{tuned:>13.0f}{tuned / base:>9.2f}x   "
                  f"default {[round(v) for v in runs[False]]} tuned "
                  f"{[round(v) for v in runs[True]]}", flush=True)


if __name__ == "__main__":
    main()
