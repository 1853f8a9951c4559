"""The probes: a few timed steps before a run, which the plan
(`descend.training.planning.plan`) sizes it by.

`step_seconds` times the training loop's own step on a copy of the model (warm-up excluded),
`eval_seconds_per_image` a few validation batches, and `fit_widths` each width of a model's recipe
(`descend.models.Recipe.widths`) on random batches, in each precision the device can use,
keeping the widest that fits the epochs its recipe says it needs (`Recipe.epochs_needed`)
(`budget.steps_that_fit`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from descend.models import ModelSpec, Recipe, create_model
from descend.runtime.precision import autocast
from descend.training.fitting.budget import MARGIN, OVERHEAD, EpochCosts, steps_that_fit
from descend.training.fitting.loop import train_one_epoch

if TYPE_CHECKING:
    from descend.training.planning.remembered import ProbeMemory

PROBE_WARMUP = 2  # untimed steps before a probe: the first allocate and pick kernels
PLAN_STEPS = 10  # timed steps of the probe that sizes a budgeted run
PROBE_STEPS = 5  # timed steps of a quicker probe (a precision, a width)
EVAL_BATCHES = 3  # timed validation batches (after an untimed one)


@torch.no_grad()
def eval_seconds_per_image(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           device: torch.device, amp: bool = False) -> float:
    """Seconds per image of an eval-mode forward pass (under bfloat16 autocast where ``amp``):
    the median of `EVAL_BATCHES` batches after the first (which allocates), or of the batches
    there are. One batch alone is at the mercy of one stall of a busy machine, and a validation
    pass too dear cuts a budget's training (`budget.validation_images`)."""
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        for x, _ in itertools.islice(batches, EVAL_BATCHES + 1):
            start = time.perf_counter()
            with autocast(device, amp):
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) / max(len(x), 1))
    finally:
        model.train(was_training)
    return statistics.median(times[1:] or times) if times else 0.0


def step_seconds(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 make_optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
                 device: torch.device, amp: bool, steps: int = PROBE_STEPS,
                 limit: float | None = None) -> float:
    """Mean seconds of one training step of a copy of ``model`` (the training loop's own step,
    `loop.train_one_epoch`) over ``steps`` steps after `PROBE_WARMUP` untimed ones; the model
    itself is untouched. The mean, not the median: the occasional slow step is part of what an
    epoch costs. ``limit``: no step starts once the steps have taken that many seconds (a
    timing that has lost a comparison by then); the mean of the timed steps done, else of the
    last warm-up one."""
    probe = copy.deepcopy(model)
    stamps = [time.perf_counter()]

    def within_limit() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in itertools.islice(batches, steps + PROBE_WARMUP):
            if limit is not None and stamps[-1] - stamps[0] > limit:
                return
            yield batch

    def stamp(_: object) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    train_one_epoch(probe, within_limit(), make_optimizer(probe.parameters()), device=device,
                    amp=amp, on_step=stamp)
    times = [b - a for a, b in itertools.pairwise(stamps)]
    timed = times[PROBE_WARMUP:] or times[-1:]
    return sum(timed) / len(timed)


def sgd(params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    """The width probe's optimizer: plain SGD (the ladder compares networks, not optimizers)."""
    return torch.optim.SGD(params, lr=0.01)


def fit_widths(spec: ModelSpec, recipe: Recipe, budget: float, started: float, batch: int,
               steps_per_epoch: int, val_images: int, device: torch.device,
               channels_last: bool, precisions: tuple[bool, ...] = (False,),
               val_every: int = 1, memory: ProbeMemory | None = None
               ) -> tuple[tuple[int, ...], list[str]]:
    """(the widest of ``recipe.widths`` that fits the epochs it needs in the budget
    (`Recipe.epochs_needed`), the figures: "widths: epochs that fit / epochs needed").

    Each candidate trains a few steps on random batches of the data's shape, in each of
    ``precisions`` (`precision.amp_candidates`: the run later picks the faster one, so the
    plan takes the faster too); its validation is timed on one batch in eval mode (with the
    model's test-time augmentation). ``memory``: figures an earlier run on this machine timed
    are taken from it, not timed (`remembered.ProbeMemory`).
    """
    def timed(what: str, candidate: ModelSpec, amp: bool, measure: Callable[[], float]) -> float:
        if memory is None:
            return measure()
        return memory.seconds({"probe": what, "model": candidate.to_dict(), "amp": amp,
                               "batch": batch, "channels_last": channels_last}, measure)

    x = torch.randn(batch, spec.in_channels, *spec.image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    batches = [(x, torch.randint(0, spec.num_classes, (batch,), device=device))] * (
        PROBE_STEPS + PROBE_WARMUP)
    ladder = recipe.widths
    chosen, notes = ladder[0], []
    for widths in ladder:
        candidate = dataclasses.replace(spec, kwargs={**spec.kwargs, "widths": widths})
        model = create_model(candidate).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        step, amp = min((timed("width step", candidate, amp, functools.partial(
            step_seconds, model, batches, sgd, device, amp)), amp) for amp in precisions)
        per_image = timed("width validation per image", candidate, amp, functools.partial(
            eval_seconds_per_image, model, batches, device, amp))
        costs = EpochCosts(step, OVERHEAD, val_images * per_image, val_every)
        epochs = steps_that_fit(budget * (1 - MARGIN) - (time.monotonic() - started), costs,
                                steps_per_epoch) // steps_per_epoch
        needed = recipe.epochs_needed(widths)
        notes.append(f"{list(widths)}: {epochs}/{needed}")
        if epochs < needed and widths != ladder[0]:
            break
        chosen = widths
    return chosen, notes


