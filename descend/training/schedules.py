"""Learning-rate schedules by name: constant, step, multistep, exponential, cosine (with
warm-up), onecycle and plateau. Each is a torch.optim.lr_scheduler object; ``per_step`` says
whether it advances every batch (smooth schedules) or every epoch.
"""

from __future__ import annotations

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
class Schedule:
    scheduler: Any
    per_step: bool
    needs_metric: bool = False

    def step_batch(self) -> None:
        if self.per_step:
            self.scheduler.step()

    def step_epoch(self, metric: float) -> None:
        if self.per_step:
            return
        if self.needs_metric:
            self.scheduler.step(metric)
        else:
            self.scheduler.step()


Factory = Callable[[torch.optim.Optimizer, TrainConfig, int], Schedule]
SCHEDULES: Registry[Factory] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    return Schedule(lr_scheduler.LambdaLR(opt, lambda _: 1.0), per_step=False)


@SCHEDULES.register("step")
def step(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    return Schedule(lr_scheduler.StepLR(opt, cfg.step_size, cfg.gamma), per_step=False)


@SCHEDULES.register("multistep")
def multistep(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    return Schedule(lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma), per_step=False)


@SCHEDULES.register("exponential")
def exponential(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    return Schedule(lr_scheduler.ExponentialLR(opt, cfg.gamma), per_step=False)


@SCHEDULES.register("cosine")
def cosine(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    """Linear warm-up for ``warmup_epochs``, then lr * (1 + cos(pi * progress)) / 2 to zero."""
    total = cfg.epochs * steps
    warm = min(int(cfg.warmup_epochs * steps), total - 1)

    def factor(i: int) -> float:
        if i < warm:
            return (i + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (i - warm) / max(1, total - warm))))

    return Schedule(lr_scheduler.LambdaLR(opt, factor), per_step=True)


@SCHEDULES.register("onecycle")
def onecycle(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    # Momentum cycling only where the optimizer has a momentum hyper-parameter to cycle.
    cycle = has_momentum(opt)  # SGD, AdaGrad and RMSProp have no momentum to cycle
    total = cfg.epochs * steps
    if total < 4:  # too short to warm up and anneal: hold the learning rate
        return constant(opt, cfg, steps)
    # torch divides by (pct_start * total - 1): keep at least two warm-up steps.
    pct = max(0.25, 2.0 / total)
    return Schedule(
        lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                total_steps=total, pct_start=pct, cycle_momentum=cycle),
        per_step=True,
    )


@SCHEDULES.register("plateau")
def plateau(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    mode = "max" if cfg.monitor == "val_acc" else "min"
    return Schedule(
        lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=cfg.gamma,
                                       patience=cfg.plateau_patience),
        per_step=False, needs_metric=True,
    )


def create_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Schedule:
    return SCHEDULES.get(cfg.schedule)(opt, cfg, steps)
