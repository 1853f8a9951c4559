"""Learning-rate schedules by name: constant, step, multistep, exponential, cosine and linear
(each with warm-up), onecycle and plateau; ``per_step`` says whether one advances every batch
(smooth schedules) or every epoch.

A run's length is a `Horizon`: the steps done and the steps planned. onecycle, cosine and
linear (`descend.config.FIXED_LENGTH`) are functions of the horizon's progress, so a time
budget that learns mid-run that fewer (or more) steps fit revises the horizon and the rest of
the schedule stretches or shrinks to end on the last step, with no jump in the learning rate. The
epoch-based schedules are torch's own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import lr_scheduler

from descend.config import TrainConfig
from descend.optim.base import has_momentum
from descend.registry import Registry


@dataclass
class Horizon:
    """How far along its planned length a run is. Progress runs from 0 at the first step to 1
    at the last (``total - 1``); a revision keeps the progress made and re-paces the rest::

        progress(step) = p0 + (step - s0) * (1 - p0) / (total - 1 - s0)

    with (s0, p0) the step and progress at the last revision ((0, 0) before any). Unrevised, it
    is ``step / (total - 1)``, the pace of torch's OneCycleLR."""

    total: int
    step: int = 0
    anchor_step: int = 0
    anchor_progress: float = 0.0

    def progress(self) -> float:
        left = self.total - 1 - self.anchor_step
        if left <= 0:
            return 1.0
        done = (self.step - self.anchor_step) / left
        return min(1.0, self.anchor_progress + done * (1.0 - self.anchor_progress))

    @property
    def steps_left(self) -> int:
        return max(0, self.total - self.step)

    def revise(self, total: int) -> None:
        """Plan ``total`` steps in all from here on (at least the steps already done)."""
        self.anchor_progress, self.anchor_step = self.progress(), self.step
        self.total = max(int(total), self.step)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class ProgressSchedule:
    """Sets each group's learning rate (and momentum, where ``momentum`` is given) from the
    horizon's progress: ``lr = peak x factor(progress)``; ``momentum(progress)`` likewise."""

    def __init__(self, opt: torch.optim.Optimizer, horizon: Horizon,
                 factor: Callable[[float], float],
                 momentum: Callable[[float], float] | None = None) -> None:
        self.opt, self.horizon, self.factor, self.momentum = opt, horizon, factor, momentum
        self.peaks = [g["lr"] for g in opt.param_groups]
        self.apply()

    def apply(self) -> None:
        p = self.horizon.progress()
        for group, peak in zip(self.opt.param_groups, self.peaks):
            group["lr"] = peak * self.factor(p)
            if self.momentum is not None:
                m = self.momentum(p)
                if "betas" in group:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m

    def step(self) -> None:
        self.apply()

    def state_dict(self) -> dict[str, Any]:
        return {"peaks": list(self.peaks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peaks = list(state["peaks"])
        self.apply()


@dataclass
class Schedule:
    scheduler: Any
    per_step: bool
    needs_metric: bool = False
    horizon: Horizon = dataclasses.field(default_factory=lambda: Horizon(0))

    def step_batch(self) -> None:
        """After each optimizer step: one more step along the horizon."""
        self.horizon.step += 1
        if self.per_step:
            self.scheduler.step()

    def step_epoch(self, metric: float | None) -> None:
        """After each epoch; ``metric`` is None where the epoch was not validated."""
        if self.per_step:
            return
        if self.needs_metric:
            if metric is not None:
                self.scheduler.step(metric)
        else:
            self.scheduler.step()


Factory = Callable[[torch.optim.Optimizer, TrainConfig, int, Horizon], Schedule]
SCHEDULES: Registry[Factory] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
             horizon: Horizon) -> Schedule:
    return Schedule(lr_scheduler.LambdaLR(opt, lambda _: 1.0), per_step=False)


@SCHEDULES.register("step")
def step(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int, horizon: Horizon) -> Schedule:
    return Schedule(lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma), per_step=False)


@SCHEDULES.register("multistep")
def multistep(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
              horizon: Horizon) -> Schedule:
    return Schedule(lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma), per_step=False)


@SCHEDULES.register("exponential")
def exponential(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
                horizon: Horizon) -> Schedule:
    return Schedule(lr_scheduler.ExponentialLR(opt, cfg.gamma), per_step=False)


def cos_between(start: float, end: float, t: float) -> float:
    """From ``start`` at t = 0 to ``end`` at t = 1 along half a cosine."""
    return end + (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2


def warmed(anneal: Callable[[float], float], cfg: TrainConfig, steps: int,
           horizon: Horizon) -> Callable[[float], float]:
    """Linear warm-up for ``warmup_epochs``, then lr * anneal(t) with t from 0 to 1 over the
    rest; in steps ``i`` of the planned run (``progress x (total - 1)``, so a revision
    re-paces it)."""
    total = horizon.total
    warm = min(int(cfg.warmup_epochs * steps), total - 1)

    def factor(p: float) -> float:
        i = p * (total - 1)
        if i < warm:
            return (i + 1) / warm
        return anneal((i - warm) / max(1, total - warm))

    return factor


@SCHEDULES.register("cosine")
def cosine(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
           horizon: Horizon) -> Schedule:
    """Warm-up, then lr * (1 + cos(pi t)) / 2 to zero."""
    factor = warmed(lambda t: cos_between(1.0, 0.0, t), cfg, steps, horizon)
    return Schedule(ProgressSchedule(opt, horizon, factor), per_step=True)


@SCHEDULES.register("linear")
def linear(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
           horizon: Horizon) -> Schedule:
    """Warm-up, then lr * (1 - t): a straight line to zero, airbench's decay (which warms up
    for no steps: ``--warmup-epochs 0``)."""
    factor = warmed(lambda t: 1.0 - min(max(t, 0.0), 1.0), cfg, steps, horizon)
    return Schedule(ProgressSchedule(opt, horizon, factor), per_step=True)


# One-cycle as torch's OneCycleLR has it (cosine phases, peak / 25 at the start, peak / 25e4
# at the end, momentum 0.95 -> 0.85 -> 0.95 unless --momentum says otherwise), on the
# horizon's progress so a budget can re-pace it; tests/training/test_schedules.py checks it
# against torch's step for step.
DIV_START, DIV_END, MOMENTA = 25.0, 1e4, (0.85, 0.95)
DEFAULT_MOMENTUM = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "momentum")


@SCHEDULES.register("onecycle")
def onecycle(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
             horizon: Horizon) -> Schedule:
    total = horizon.total
    if total < 4:  # too short to warm up and anneal: hold the learning rate
        return constant(opt, cfg, steps, horizon)
    # At least two warm-up steps (torch divides by pct_start * total - 1).
    pct = max(0.25, 2.0 / total)
    peak_at = (pct * total - 1) / (total - 1)  # the progress where the warm-up ends
    low, high = MOMENTA

    def factor(p: float) -> float:
        if p <= peak_at:
            return cos_between(1 / DIV_START, 1.0, p / peak_at)
        return cos_between(1.0, 1 / DIV_START / DIV_END, (p - peak_at) / (1 - peak_at))

    def momentum(p: float) -> float:
        if p <= peak_at:
            return cos_between(high, low, p / peak_at)
        return cos_between(low, high, (p - peak_at) / (1 - peak_at))

    # Momentum cycling only where the optimizer has a momentum hyper-parameter to cycle (SGD,
    # AdaGrad and RMSProp have none), and only at --momentum's default: a --momentum of another
    # value is held, as torch's OneCycleLR with cycle_momentum=False.
    cycles = has_momentum(opt) and cfg.momentum == DEFAULT_MOMENTUM
    return Schedule(ProgressSchedule(opt, horizon, factor, momentum if cycles else None),
                    per_step=True)


@SCHEDULES.register("plateau")
def plateau(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
            horizon: Horizon) -> Schedule:
    return Schedule(
        lr_scheduler.ReduceLROnPlateau(opt, mode="max" if cfg.monitor == "val_acc" else "min",
                                       factor=cfg.gamma, patience=cfg.plateau_patience),
        per_step=False, needs_metric=True,
    )


def create_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int,
                    horizon: Horizon | None = None) -> Schedule:
    """``cfg.schedule`` for ``steps`` steps an epoch over ``horizon`` (``cfg.epochs`` epochs
    unless given)."""
    horizon = horizon or Horizon((cfg.epochs or 1) * steps)
    schedule = SCHEDULES.get(cfg.schedule)(opt, cfg, steps, horizon)
    schedule.horizon = horizon
    return schedule
