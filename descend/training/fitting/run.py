"""What the epoch loop and its callbacks see: the `Run` and the `Epoch` under way.

Two things with two owners. The `Run` is the fixed context of a training run: `trainer.build`
makes it from the plan (and `load_resume_state` moves it to where ``last.pt`` left off); after
that the loop only appends to ``history`` and steps the ``horizon`` (which `TimeBudget` may
revise). The `Epoch` is the per-epoch state: `trainer.fit` makes a new one at the start of every
epoch and fills it in as the epoch goes; callbacks read it and may set ``epoch.stop``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from descend.config import TrainConfig
from descend.data.batching import LoaderOptions
from descend.data.splits import DataSplits
from descend.training.fitting.loop import RunningMetrics
from descend.training.fitting.monitor import BestMetric
from descend.training.fitting.schedules import Horizon, Schedule
from descend.training.keeping.run_folder import RunFolder

if TYPE_CHECKING:
    from descend.training.fitting.budget import BudgetPlan, TimeBudget
    from descend.training.fitting.callbacks import RunLog
    from descend.training.planning.plan import RunPlan


@dataclass
class Epoch:
    """The epoch under way (`trainer.fit` makes it; it is ``run.epoch`` until the next one)."""

    index: int  # 0-based
    lr: float  # the learning rate it started with
    running: RunningMetrics | None = None  # the sums of its steps so far (while it trains)
    # Its metrics (`METRIC_COLUMNS`; val_ ones None where it is not validated), once it has
    # trained and been validated: set before ``on_epoch_end``.
    row: dict[str, Any] = field(default_factory=dict)
    improved: bool = False  # did it improve the monitored metric?
    stop: str | None = None  # set by a callback: why training ends after this epoch


@dataclass
class Run:
    """The fixed context of a training run (see the module docstring for who changes what)."""

    cfg: TrainConfig
    log: RunLog
    device: torch.device
    data: DataSplits
    model: nn.Module
    step_model: nn.Module  # the model as trained: compiled with --compile, else `model`
    folder: RunFolder  # the locked run folder
    loader_options: LoaderOptions  # how the training batches are made
    train_batches: Any  # BatchLoader or StreamingLoader
    val_batches: Any
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    best: BestMetric
    meta: dict[str, Any]  # what every checkpoint says about the model, data and config
    callbacks: Any = None  # CallbackList (set once the callbacks are made)
    start_epoch: int = 0  # the first epoch this process trains (after a resume, not 0)
    # Each finished epoch's metrics (`Epoch.row`), the loop appends them.
    history: list[dict[str, Any]] = field(default_factory=list)
    # The epoch under way (before the first, the one about to start): `fit` replaces it.
    epoch: Epoch = field(default_factory=lambda: Epoch(0, 0.0))
    new_weights: list[str] = field(default_factory=list)  # not from --init/--pretrained/--weights
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the data's, for resume checks
    amp: bool = False  # bfloat16 autocast on (`precision.choose_amp`)
    horizon: Horizon = field(default_factory=lambda: Horizon(0))  # steps done and planned
    budget: BudgetPlan | None = None  # --time-budget
    time_budget: TimeBudget | None = None  # its closed loop, one of the callbacks
    plan: RunPlan | None = None  # what the run was planned to be (`trainer.build` sets it)

    @property
    def steps_per_epoch(self) -> int:
        """The batches a whole epoch trains on: all of them, or ``--epoch-steps``."""
        return epoch_length(len(self.train_batches), self.cfg.epoch_steps)

    @property
    def planned_epochs(self) -> int:
        """The epochs the horizon holds now (and the cached head's): every epoch is whole but
        the last, which may be cut short."""
        head = 1 if self.cfg.cached_head else 0  # epoch 1 fits the head (`trainer.head_epoch`)
        return max(1, head + math.ceil(self.horizon.total / self.steps_per_epoch))

    def validates(self) -> bool:
        """Whether the epoch that just trained is validated: every ``--val-every``-th, and the
        last (its horizon ended, or a callback stops the run)."""
        every = 1 if self.cfg.val_every is None else self.cfg.val_every
        return (every > 0 and (self.epoch.index + 1) % every == 0) or not self.horizon.steps_left

    def averaged_model(self) -> nn.Module | None:
        """The model of averaged weights a callback keeps (`callbacks.EMA`), which validation
        measures and best.pt keeps, or None: the live model is."""
        for cb in self.callbacks.callbacks if self.callbacks else ():
            if (averaged := cb.averaged_model()) is not None:
                return averaged
        return None

    @property
    def validation_images(self) -> int:
        """The images a validation pass measures: the split's, or the fixed subset of a budget
        too short to validate all of them (`budget.validation_images`)."""
        kept = self.budget.val_images if self.budget else None
        return len(self.data.val) if kept is None else kept

    @property
    def deadline(self) -> float | None:
        """time.monotonic() when --time-budget ends."""
        return self.budget.deadline if self.budget else None

    @property
    def budget_seconds(self) -> float | None:
        return self.budget.seconds if self.budget else None

    def epoch_batches(self) -> Iterator[Any]:
        """This epoch's batches: a whole epoch, or fewer where the horizon ends first (it may
        be revised while the epoch goes)."""
        if not self.horizon.steps_left:
            return
        for i, batch in enumerate(self.train_batches):
            yield batch
            if i + 1 >= self.steps_per_epoch or not self.horizon.steps_left:
                return

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    def resume_state(self) -> dict[str, Any]:
        """What `last.pt` needs beyond the weights to continue exactly."""
        return {"data_fingerprint": self.fingerprint,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.scheduler.state_dict(),
                "early_stopping": self.best.state_dict(), "history": self.history,
                "rng": {"torch": torch.get_rng_state()},
                # The precision chosen by timing (`precision.choose_amp`): a resumed run keeps it,
                # so that it ends with the weights of a run never interrupted.
                "precision": {"bf16_autocast": self.amp},
                "horizon": self.horizon.state_dict(),
                **self.callbacks.state_dicts()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Continue from ``last.pt``: the horizon first, since the schedule is a function of it.
        A run without a budget keeps the length its plan gives (``--epochs`` may extend a
        constant run); a budgeted one, its last revision."""
        self.start_epoch = int(state["epoch"])
        total = self.horizon.total
        self.horizon.load_state_dict(state["horizon"])
        if self.budget is None:
            self.horizon.total = total
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.scheduler.load_state_dict(state["scheduler"])
        self.best.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        self.callbacks.load_state_dicts(state)


def epoch_length(batches: int, epoch_steps: int | None) -> int:
    """Steps in an epoch of ``batches`` batches, cut to ``epoch_steps`` when that is set."""
    return min(batches, epoch_steps) if epoch_steps else batches
