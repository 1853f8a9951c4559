"""Timing training steps alone, for the benchmarks that bound or compare the model's arithmetic
(B4's floor, B9): forward, cross-entropy, backward and the optimizer's step, nothing else."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def median_step_seconds(model: nn.Module, optimizer: torch.optim.Optimizer,
                        batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], amp: bool,
                        steps: int, warmup: int) -> float:
    """Median seconds of ``steps`` CPU training steps after ``warmup`` untimed ones, bfloat16
    autocast when ``amp``; ``batch()`` gives each step's (images, labels), outside the timing."""
    times = []
    for _ in range(warmup + steps):
        x, y = batch()
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])
