"""`Run`: everything a training run is made of, as the epoch loop and its callbacks see it.

`descend.training.trainer.setup` builds it; `fit` drives it; callbacks read it and may set
``stop``. It holds no logic of its own beyond the resume state that `last.pt` carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from descend.config import TrainConfig
from descend.data.batching import LoaderOptions
from descend.data.splits import DataSplits
from descend.training.loop import RunningMetrics
from descend.training.monitor import BestMetric
from descend.training.run_folder import RunFolder
from descend.training.schedules import Schedule

if TYPE_CHECKING:
    from descend.training.callbacks import RunLog


@dataclass
class Run:
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
    start_epoch: int = 0
    epoch: int = 0  # 0-based index of the epoch under way
    lr: float = 0.0  # the learning rate the epoch started with
    history: list[dict[str, float]] = field(default_factory=list)
    row: dict[str, float] = field(default_factory=dict)  # the last finished epoch's metrics
    improved: bool = False  # did that epoch improve the monitored metric?
    running: RunningMetrics | None = None  # the epoch's sums so far (during training)
    evaluated_state: dict[str, torch.Tensor] | None = None  # weights validated, when not live
    stop: str | None = None  # set by a callback: why training stops after this epoch
    new_weights: list[str] = field(default_factory=list)  # not from --init/--pretrained/--weights
    fingerprint: dict[str, Any] = field(default_factory=dict)  # the data's, for resume checks
    amp: bool = False  # bfloat16 autocast on (`precision.choose_amp`)
    deadline: float | None = None  # time.monotonic() at which --time-budget ends

    @property
    def steps_per_epoch(self) -> int:
        """The batches an epoch trains on: all of them, or ``--epoch-steps``."""
        return epoch_length(len(self.train_batches), self.cfg.epoch_steps)

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    def resume_state(self) -> dict[str, Any]:
        """What `last.pt` needs beyond the weights to continue exactly (0.1.0's keys)."""
        return {"data_fingerprint": self.fingerprint,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.scheduler.state_dict(),
                "early_stopping": self.best.state_dict(), "history": self.history,
                "rng": {"torch": torch.get_rng_state()},
                # The precision chosen by timing (`precision.choose_amp`): a resumed run keeps it,
                # so that it ends with the weights of a run never interrupted.
                "precision": {"bf16_autocast": self.amp},
                **self.callbacks.state_dicts()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.scheduler.load_state_dict(state["scheduler"])
        self.best.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"])
        torch.set_rng_state(state["rng"]["torch"])
        self.callbacks.load_state_dicts(state)


def epoch_length(batches: int, epoch_steps: int | None) -> int:
    """Steps in an epoch of ``batches`` batches, cut to ``epoch_steps`` when that is set."""
    return min(batches, epoch_steps) if epoch_steps else batches
