"""B19: fastres's weight gradient on small maps, torch's kernel against the batch-as-channels
convolution (`descend.models.small_maps`).

    python benchmarks/b19_small_maps.py [--widths 64-256-256] [--rounds 3] [--steps 30]

Part 1 times the weight gradient of each 3x3 convolution of fastres at ``--widths`` (bfloat16,
channels-last, batch 256, the map sides a 32x32 image gives) both ways. Part 2 times whole
training steps of the model (bfloat16 autocast, Nesterov SGD, one batch of random images), the
batch-as-channels gradient on (maps of at most `SMALL_MAP` pixels) and off, alternated in
``--rounds`` rounds in this one process, so that both see the same machine. BENCHMARKS.md B19
has the figures and the machine they came from.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402
from steps import median_step_seconds  # noqa: E402

import descend.models.small_maps as small_maps  # noqa: E402
from descend.models import ModelSpec, create_model, with_defaults  # noqa: E402

BATCH = 256


def ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()``."""
    times = []
    for k in range(warmup + repeats):
        start = time.perf_counter()
        fn()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def layer_shapes(widths: list[int]) -> list[tuple[int, int, int]]:
    """(in channels, out channels, map side) of fastres's 3x3 convolutions on 32x32 images:
    the whitening's 2x2 patches leave 31x31, each group pools by 2 after its first conv."""
    shapes, side, ci = [], 31, 24
    for co in widths:
        shapes += [(ci, co, side), (co, co, side // 2)]
        side, ci = side // 2, co
    return shapes


def native_weight_gradient(x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """torch's (oneDNN's) weight gradient of a 3x3, padding-1 convolution."""
    return torch.ops.aten.convolution_backward(dy, x, w, None, [1, 1], [1, 1], [1, 1], False,
                                               [0, 0], 1, [False, True, False])[1]


def weight_gradients(widths: list[int]) -> None:
    bf16, cl = torch.bfloat16, torch.channels_last
    for ci, co, side in layer_shapes(widths):
        x = torch.randn(BATCH, ci, side, side, dtype=bf16).contiguous(memory_format=cl)
        w = torch.randn(co, ci, 3, 3, dtype=bf16).contiguous(memory_format=cl)
        dy = torch.randn(BATCH, co, side, side, dtype=bf16).contiguous(memory_format=cl)
        want = native_weight_gradient(x, w, dy).float()
        got = small_maps.weight_gradient_by_batch(x, dy, 1).float()
        err = ((got - want).abs().max() / want.abs().max()).item()
        forward = ms(functools.partial(F.conv2d, x, w, padding=1))
        native = ms(functools.partial(native_weight_gradient, x, w, dy))
        by_batch = ms(functools.partial(small_maps.weight_gradient_by_batch, x, dy, 1))
        print(f"  {ci:>3} -> {co:<3} at {side:>2}x{side:<2}  forward {forward:6.1f} ms   weight "
              f"gradient: torch {native:6.1f} ms, by batch {by_batch:6.1f} ms   "
              f"(largest difference {err:.1e} of the largest entry)", flush=True)


def whole_steps(widths: list[int], rounds: int, steps: int) -> None:
    spec = with_defaults(ModelSpec("fastres", 10, 3, (32, 32), {"widths": widths}))
    torch.manual_seed(0)
    base = create_model(spec).to(memory_format=torch.channels_last).train()
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    limit = small_maps.SMALL_MAP
    times: dict[str, list[float]] = {"torch's gradient": [], "batch-as-channels": []}
    for r in range(rounds):
        for name, side in (("batch-as-channels", limit), ("torch's gradient", 0)):
            small_maps.SMALL_MAP = side
            model = copy.deepcopy(base)
            opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
            t = median_step_seconds(model, opt, lambda: (x, y), amp=True, steps=steps,
                                    warmup=5)
            times[name].append(1000 * t)
            print(f"  round {r}: {name:<18} {1000 * t:6.1f} ms a step", flush=True)
    small_maps.SMALL_MAP = limit
    a, b = statistics.mean(times["torch's gradient"]), statistics.mean(times["batch-as-channels"])
    print(f"mean: torch's gradient {a:.1f} ms, batch-as-channels {b:.1f} ms a step: "
          f"{a / b:.3f}x", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="64-256-256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    a = p.parse_args()
    widths = [int(v) for v in a.widths.split("-")]
    print(describe(), flush=True)
    print(f"fastres {a.widths}, batch {BATCH}, bfloat16, channels-last", flush=True)
    print("weight gradient of each 3x3 convolution (median of 10):", flush=True)
    weight_gradients(widths)
    print(f"whole training steps, median of {a.steps} (after 5), alternated:", flush=True)
    whole_steps(widths, a.rounds, a.steps)


if __name__ == "__main__":
    main()
