"""The time budget's closed loop (`descend.training.fitting.budget.TimeBudget`) on a clock of
its own: `simulate` calls its hooks in `trainer.fit`'s order, each step taking what a step-time
pattern says, so that tests/training/test_budget.py and B16 (benchmarks/b16_budget_load.py
``--simulate``) see how it spends a budget under a changing load without a timed run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from descend.config import TrainConfig
from descend.training.fitting import budget
from descend.training.fitting.budget import (
    MARGIN,
    BudgetPlan,
    EpochCosts,
    TimeBudget,
    steps_that_fit,
)
from descend.training.fitting.run import Epoch
from descend.training.fitting.schedules import Horizon, create_schedule


class Clock:
    """Seconds that pass only when the simulation says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimulatedRun:
    """What `TimeBudget` reads of a `Run`, with a real horizon and one-cycle schedule."""

    horizon: Horizon
    steps_per_epoch: int
    deadline: float
    budget_seconds: float
    epoch: Epoch = field(default_factory=lambda: Epoch(0, 0.0))
    history: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)


@dataclass
class Simulation:
    spent: float
    run: SimulatedRun
    loop: TimeBudget
    lrs: list[float]


def simulate(step_seconds: Callable[[float], float], seconds: float = 20.0, spe: int = 234,
             probe_step: float = 0.03, validation: float = 0.6, after: float = 0.3,
             loader_start: float = 0.05, warm_up: float = 0.4,
             loop_type: Callable[[BudgetPlan, Callable[[], float]], TimeBudget] = TimeBudget
             ) -> Simulation:
    """`trainer.fit`'s hooks in its order, each step taking ``step_seconds(now)`` on a clock of
    its own: a 20 s budget of MNIST-like epochs (234 steps) as the plan's probe sized it,
    validated at the end alone, ``after`` seconds of checkpoints after each epoch, the loader's
    start before each epoch's first step and the kernels' ``warm_up`` before the run's."""
    clock = Clock()
    costs = EpochCosts(probe_step, budget.OVERHEAD, validation, val_every=0)
    planned = steps_that_fit(seconds * (1 - MARGIN), costs, spe)
    loop = loop_type(BudgetPlan(seconds, seconds, costs), clock)
    run = SimulatedRun(Horizon(planned), spe, seconds, seconds)
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0, momentum=0.9)
    schedule = create_schedule(opt, TrainConfig(schedule="onecycle"), spe, run.horizon)
    lrs: list[float] = []
    loop.on_train_start(run)  # type: ignore[arg-type]
    index = 0
    while run.horizon.steps_left:
        run.epoch = Epoch(index, 0.0)
        loop.on_epoch_start(run)  # type: ignore[arg-type]
        clock.now += loader_start + (warm_up if index == 0 else 0.0)
        for i in range(spe):  # `Run.epoch_batches`: the horizon may move while the epoch goes
            clock.now += step_seconds(clock.now)
            lrs.append(opt.param_groups[0]["lr"])
            schedule.step_batch()
            loop.on_step_end(run)  # type: ignore[arg-type]
            if i + 1 >= spe or not run.horizon.steps_left:
                break
        last = not run.horizon.steps_left
        clock.now += validation if last else 0.0
        run.epoch.row = {"epoch": index + 1, "val_acc": 0.9 if last else None,
                         "val_seconds": validation if last else None}
        run.history.append(run.epoch.row)
        loop.on_epoch_end(run)  # type: ignore[arg-type]
        clock.now += after  # the checkpoints, written after the budget's hook
        index += 1
    loop.on_train_end(run)  # type: ignore[arg-type]
    assert loop.spent is not None
    return Simulation(loop.spent, run, loop, lrs)
