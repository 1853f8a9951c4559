"""``--time-budget 5m``: plan the epochs, and so the schedule's length, to end within a budget.

The budget counts from the first training step to the end of the last epoch's validation;
loading the data before and the test pass after are extra. Before the run starts, each fastres
width is timed on random batches in each precision the device can use (`fit_widths`: the widest
that fits `MIN_EPOCHS` epochs), then a few steps of the real model and loader
(`step_seconds`, the training loop's own step) and one validation batch, so the plan is::

    epoch  = steps per epoch x seconds per step + validation images x seconds per image
    epochs = floor((budget - the time the probe took) x (1 - MARGIN) / (epoch + OVERHEAD))

at least one. The schedule is then built for that many epochs, so a one-cycle schedule anneals
to its end exactly when the budget does. `TimeBudget` (a callback) stops the run early, with
the best weights kept, if the measured epochs turn out slower than planned.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from descend.models import ModelSpec, create_model
from descend.training.loop import train_one_epoch

# A run's steps came out up to 30% slower than a 5-step probe on this shared 2-core machine
# (B3); a longer probe and this margin keep the plan inside the budget, and `TimeBudget` stops a
# run that still overruns.
PLAN_STEPS = 12
PROBE_STEPS = 5  # timed steps of a quicker probe (a precision, a width), after one warm-up step
MARGIN = 0.08
OVERHEAD = 0.5  # seconds per epoch for checkpoints, metrics and curves
# fastres sizes, narrowest first. With a budget and no --model-arg widths, a run takes the widest
# that still fits MIN_EPOCHS epochs: a one-cycle run of fewer epochs leaves a wider net short of
# what it can reach, so on short budgets more epochs of a narrower net win (airbench's recipes
# train about ten; BENCHMARKS.md B3 has the figures).
# The last is airbench94's own shape (64, 256, 256), for budgets that fit ten epochs of it.
WIDTH_LADDER = ((8, 16, 32), (16, 32, 64), (32, 64, 128), (64, 128, 256), (64, 256, 256))
MIN_EPOCHS = 5


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


def step_seconds(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 make_optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
                 device: torch.device, amp: bool, steps: int = PROBE_STEPS) -> float:
    """Mean seconds of one training step of a copy of ``model`` (the training loop's own step,
    `loop.train_one_epoch`) over ``steps`` steps after one warm-up step; the model itself is
    untouched. The mean, not the median: the occasional slow step is part of what an epoch
    costs."""
    probe = copy.deepcopy(model)
    stamps = [time.perf_counter()]

    def stamp(_: object) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    train_one_epoch(probe, itertools.islice(batches, steps + 1), make_optimizer(probe.parameters()),
                    device=device, amp=amp, on_step=stamp)
    times = [b - a for a, b in itertools.pairwise(stamps)]
    timed = times[1:] or times
    return sum(timed) / len(timed)


def fit_widths(spec: ModelSpec, budget: float, started: float, batch: int,
               steps_per_epoch: int, val_images: int, device: torch.device,
               channels_last: bool, precisions: tuple[bool, ...] = (False,),
               ) -> tuple[tuple[int, ...], list[str]]:
    """(the widest `WIDTH_LADDER` widths with `MIN_EPOCHS` epochs in the budget, the figures).

    Each candidate trains a few steps on random batches of the data's shape, in each of
    ``precisions`` (`precision.amp_candidates`: the run later picks the faster one, so the
    plan takes the faster too); its validation is estimated as a third of a step per image (a
    forward pass), twice for the mirror TTA.
    """
    x = torch.randn(batch, spec.in_channels, *spec.image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    batches = [(x, torch.randint(0, spec.num_classes, (batch,), device=device))] * 6
    chosen, notes = WIDTH_LADDER[0], []
    for widths in WIDTH_LADDER:
        model = create_model(dataclasses.replace(spec, kwargs={**spec.kwargs, "widths": widths}))
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        step = min(step_seconds(model, batches, lambda p: torch.optim.SGD(p, lr=0.01), device,
                                amp) for amp in precisions)
        epochs, _, _ = plan_epochs(budget, time.monotonic() - started, step, steps_per_epoch,
                                val_images, 2 * step / 3 / batch)
        notes.append(f"{list(widths)}: {epochs}")
        if epochs < MIN_EPOCHS and widths != WIDTH_LADDER[0]:
            break
        chosen = widths
    return chosen, notes


def plan_epochs(budget: float, spent: float, step: float, steps_per_epoch: int,
                val_images: int, val_per_image: float) -> tuple[int, float, int | None]:
    """(epochs, predicted seconds of one epoch, steps per epoch or None for all of them) that
    fit ``budget - spent`` seconds. A budget shorter than one epoch trains one epoch of as many
    steps as fit before its validation pass."""
    validation = val_per_image * val_images + OVERHEAD
    epoch = step * steps_per_epoch + validation
    usable = (budget - spent) * (1 - MARGIN)
    if usable >= epoch:
        return math.floor(usable / epoch), epoch, None
    steps = max(1, min(steps_per_epoch, math.floor((usable - validation) / step)))
    return 1, step * steps + validation, steps
