"""``--time-budget 5m``: plan the epochs, and so the schedule's length, to end within a budget.

The budget counts from the first training step to the end of the last epoch's validation;
loading the data before and the test pass after are extra. Before the run starts, a few
training steps are timed on a copy of the model (`precision.step_seconds`) and one validation
batch is timed, so the plan is::

    epoch  = steps per epoch x seconds per step + validation images x seconds per image
    epochs = floor((budget - the time the probe took) x (1 - MARGIN) / (epoch + OVERHEAD))

at least one. The schedule is then built for that many epochs, so a one-cycle schedule anneals
to its end exactly when the budget does. `TimeBudget` (a callback) stops the run early, with
the best weights kept, if the measured epochs turn out slower than planned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch
from torch import nn

MARGIN = 0.03  # a step's time varies by a few percent over a run
OVERHEAD = 0.5  # seconds per epoch for checkpoints, metrics and curves


def format_duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


@torch.no_grad()
def eval_seconds_per_image(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           device: torch.device) -> float:
    """Seconds per image of an eval-mode forward pass, timed on the second batch."""
    was_training = model.training
    model.eval()
    times: list[tuple[float, int]] = []
    try:
        for x, _ in batches:
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start, len(x)))
            if len(times) == 2:
                break
    finally:
        model.train(was_training)
    seconds, n = times[-1] if times else (0.0, 1)
    return seconds / max(n, 1)


def plan_epochs(budget: float, spent: float, step: float, steps_per_epoch: int,
                val_images: int, val_per_image: float) -> tuple[int, float]:
    """(epochs, predicted seconds of one epoch) that fit ``budget - spent`` seconds."""
    epoch = step * steps_per_epoch + val_per_image * val_images + OVERHEAD
    usable = (budget - spent) * (1 - MARGIN)
    return max(1, math.floor(usable / epoch)), epoch
