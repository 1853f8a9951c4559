"""The concerns of a training run, each a small callback: checkpoints, the metrics log and its
plot, TensorBoard, early stopping, the weight EMA, and progress.

A callback overrides the hooks it needs; the loop in `descend.training.trainer.fit` calls them
in this order for every epoch::

    on_train_start
      on_epoch_start, on_step_end (after each optimizer step),
      on_validation_start, on_validation_end, on_epoch_end      (once per epoch)
    on_train_end

Each hook gets the `Run`, the fixed context of the run, and may read anything in it; the epoch
under way is ``run.epoch`` (an `Epoch`: its index, lr, running sums, metrics row, whether it
improved), and setting ``run.epoch.stop`` ends training after it. A callback with state to
carry over ``--resume`` gives it a ``key`` and implements `state_dict` / `load_state_dict`;
`Checkpoint` stores it in ``last.pt`` under that key. A callback that writes or prints sets
``rank_zero_only``: under torchrun only rank 0 runs it (`descend.training.distributed`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm

from descend.errors import ConfigError
from descend.io import atomic_write_text
from descend.optim import ModelEMA
from descend.training.budget import (
    MARGIN,
    EpochCosts,
    describe_length,
    format_duration,
    steps_that_fit,
)
from descend.training.checkpoint import read_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from descend.training.run import Run

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "images_per_sec", "val_seconds"]


class Callback:
    """A piece of a training run with a few hooks; every hook does nothing unless overridden."""

    key: str | None = None  # where `state_dict` is kept in last.pt; None: no state to keep
    rank_zero_only: bool = False  # writes or prints: under torchrun, rank 0 alone runs it
    # Where it runs among the others, lowest first (ties: the order given). What the built-in
    # ones need of each other: EMA (10) folds each step into its average first; the records
    # (MetricsLog, TensorBoard: 20) come before the checkpoints, and so do FreezeBackbone (30)
    # and TimeBudget (40), whose states go into last.pt; Checkpoint (50) writes best.pt and
    # last.pt; ReplaceOldRun (60) needs the new run's first last.pt; Progress (70) and
    # EarlyStopping (80) last. A callback of yours runs after them.
    order: ClassVar[int] = 100

    def on_train_start(self, run: Run) -> None: ...
    def on_epoch_start(self, run: Run) -> None: ...
    def on_step_end(self, run: Run) -> None: ...
    def on_validation_start(self, run: Run) -> None: ...
    def on_validation_end(self, run: Run) -> None: ...
    def on_epoch_end(self, run: Run) -> None: ...
    def on_train_end(self, run: Run) -> None: ...

    def averaged_model(self) -> nn.Module | None:
        """A model of averaged weights to validate and keep as best.pt instead of the live
        one (`EMA`'s), or None."""
        return None

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None: ...


class CallbackList:
    """Calls each hook on every callback, in their declared `Callback.order`."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(run: Run) -> None:
            for cb in self.callbacks:
                getattr(cb, hook)(run)

        return call

    def state_dicts(self) -> dict[str, Any]:
        return {cb.key: cb.state_dict() for cb in self.callbacks if cb.key is not None}

    def load_state_dicts(self, state: dict[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.key is not None and cb.key in state:
                cb.load_state_dict(state[cb.key])


class EMA(Callback):
    """An EMA of the weights (``--ema-decay``), kept as a model of its own
    (`ModelEMA.module`): validation and best.pt see it; the live weights train on."""

    order = 10

    key = "ema"

    def __init__(self, run: Run, decay: float) -> None:
        self.ema = ModelEMA(run.model, decay)

    def on_step_end(self, run: Run) -> None:
        self.ema.update(run.model)

    def averaged_model(self) -> nn.Module:
        return self.ema.module

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


class MetricsLog(Callback):
    """Per-epoch rows, written to ``metrics.csv`` and drawn to ``curves.png`` after each epoch."""

    order = 20

    rank_zero_only = True

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_epoch_end(self, run: Run) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for r in run.history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k in METRIC_COLUMNS for v in [r.get(k, "")]})
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
        from descend.reports.plots import plot_curves

        plot_curves(run.history, self.run_dir / "curves.png")


class StepLosses(Callback):
    """The training loss of every step, one list per epoch (``descend optim compare`` draws
    them). Each step's loss stays on the device until its epoch ends, then all are read at
    once: one host sync per epoch, as the loop's own sums; a float per step is kept."""

    def __init__(self) -> None:
        self.epochs: list[list[float]] = []
        self._pending: list[torch.Tensor] = []

    def on_step_end(self, run: Run) -> None:
        if run.epoch.running is not None and run.epoch.running.last_loss is not None:
            self._pending.append(run.epoch.running.last_loss)

    def on_epoch_end(self, run: Run) -> None:
        self.epochs.append(torch.stack(self._pending).float().tolist() if self._pending else [])
        self._pending = []


class TensorBoard(Callback):
    """Every metric of every epoch, to ``RUN/tensorboard`` (``--tensorboard``)."""

    order = 20

    rank_zero_only = True

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: "
                              "pip install tensorboard") from None
        self.log_dir, self.writer_class = run_dir / "tensorboard", SummaryWriter
        self.writer: Any = None  # made when training starts: a callback made is no file written

    def on_train_start(self, run: Run) -> None:
        self.writer = self.writer_class(str(self.log_dir))

    def on_epoch_end(self, run: Run) -> None:
        for k, v in run.epoch.row.items():
            if v is not None:  # an epoch without validation has no val_ figures
                self.writer.add_scalar(k, v, run.epoch.row["epoch"])

    def on_train_end(self, run: Run) -> None:
        self.writer.close()


class Checkpoint(Callback):
    """``best.pt`` when the monitored metric improved, ``last.pt`` after every epoch (both
    atomic), and the best weights restored into the model when training ends."""

    order = 50

    rank_zero_only = True

    def __init__(self, run_dir: Path) -> None:
        self.best_path, self.last_path = run_dir / "best.pt", run_dir / "last.pt"

    def on_epoch_end(self, run: Run) -> None:
        row = run.epoch.row
        epoch = {**run.meta, "epoch": row["epoch"], "metrics": row}
        if run.epoch.improved:
            weights = (run.averaged_model() or run.model).state_dict()
            save_checkpoint(self.best_path, {**epoch, "state_dict": weights})
        save_checkpoint(self.last_path, {**epoch, "state_dict": run.model.state_dict(),
                                         **run.resume_state()})

    def on_train_end(self, run: Run) -> None:
        if self.best_path.is_file():
            best = read_checkpoint(self.best_path)
            run.model.load_state_dict(best["state_dict"])
            if run.epoch.stop:
                run.log(f"restored the best weights (epoch {best['epoch']})")


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` measured epochs.

    The count comes from the run's own record (``run.history`` and ``run.best``), so it needs
    no state of its own and survives ``--resume`` as the history does.
    """

    order = 80

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, run: Run) -> None:
        if self.patience > 0 and epochs_since_best(run) >= self.patience:
            run.epoch.stop = (f"early stopping: {run.best.monitor} has not improved for "
                              f"{self.patience} epochs")
            run.log(run.epoch.stop)


def epochs_since_best(run: Run) -> int:
    """The epochs that measured the monitored metric since its best (all of them, if none was
    an improvement): epochs without validation do not count."""
    monitor = run.best.monitor
    return sum(1 for row in run.history
               if row["epoch"] > run.best.best_epoch and row.get(monitor) is not None)


class TimeBudget(Callback):
    """``--time-budget``: the closed loop that keeps a run to its budget.

    It measures the run's own steps (the first of each epoch apart: it also starts the loader),
    each epoch's overhead besides them (checkpoints, curves, the first step's extra) and its
    validation pass, and asks `budget.steps_that_fit` how many steps the time left allows: early
    in the first epoch (the plan's probe may be off), mid-epoch (a machine that slowed) and at
    the end of every epoch. An answer that differs by more than `TOLERANCE` revises
    ``run.horizon``: the schedule re-paces what remains and the loop ends where the horizon
    does, the last epoch cut short where a whole one does not fit. Each revision is one log line
    and is kept in ``last.pt`` with the seconds left, so ``--resume`` goes on with the same plan
    and the budget that is left. Past the deadline (a machine that stalled), the epoch under
    way ends at once: the last resort.
    """

    order = 40

    key = "time_budget"
    TOLERANCE = 0.01  # of the planned steps: a smaller change is noise, not news

    def __init__(self, costs: EpochCosts) -> None:
        self.costs = costs  # the plan's probe until the run has measured itself
        self.after = costs.overhead  # seconds from an epoch's end to the next one's start
        self.left: float | None = None  # seconds left when last.pt was written (a resume)
        self.revisions: list[str] = []
        self.epoch_start = self.first_step_end = self.last_step_end = 0.0
        self.epoch_end: float | None = None
        self.steps = 0
        self.checks: set[int] = set()
        self.spent: float | None = None  # seconds of the budget used, once training ends
        self.overheads: list[float] = []  # each epoch's, as measured

    def on_train_start(self, run: Run) -> None:
        if self.left is not None:  # resumed (`plan.plan_resumed` set the deadline from it)
            run.log(f"time budget: {format_duration(self.left)} left of the run's budget")

    def on_epoch_start(self, run: Run) -> None:
        self.epoch_start, self.steps = time.monotonic(), 0
        if self.epoch_end is not None:  # the last epoch's checkpoints, curves and log
            self.after = self.epoch_start - self.epoch_end
        length = min(run.steps_per_epoch, run.horizon.steps_left)
        points = (8, length // 2) if not run.history else (length // 2,)
        self.checks = {n for n in points if 2 <= n < length}

    def on_step_end(self, run: Run) -> None:
        now = self.last_step_end = time.monotonic()
        self.steps += 1
        if self.steps == 1:
            self.first_step_end = now
            return
        if self.steps in self.checks:  # the same steps on every rank under torchrun
            self.measured(step=(now - self.first_step_end) / (self.steps - 1))
            self.revise(run, now, run.epoch.index, min(run.steps_per_epoch - self.steps,
                                                 run.horizon.steps_left),
                        f"{self.steps} steps into epoch {run.epoch.index + 1}")
        # (Under torchrun the ranks would disagree on the moment; they keep the revisions.)
        if (run.deadline is not None and now > run.deadline and run.horizon.steps_left
                and one_process()):
            run.horizon.revise(run.horizon.step)
            run.log("time budget: the deadline has passed; this epoch ends now")

    def on_epoch_end(self, run: Run) -> None:
        now = time.monotonic()
        if self.steps >= 2:
            step = (self.last_step_end - self.first_step_end) / (self.steps - 1)
            validation = float(run.epoch.row.get("val_seconds") or 0.0)
            extra = max(0.0, self.first_step_end - self.epoch_start - step)
            self.overheads.append(extra + now - self.last_step_end - validation + self.after)
            # The median: one slow checkpoint write is not the next epoch's cost.
            self.measured(step=step, overhead=statistics.median(self.overheads),
                          validation=validation or None)
        if run.horizon.steps_left and not run.epoch.stop:
            done = run.epoch.index + 1
            self.revise(run, now, done, 0, f"after epoch {done}",
                        at_least=0 if run.epoch.row.get("val_acc") is not None else 1)
        self.left = None if run.deadline is None else run.deadline - now
        self.epoch_end = now

    def on_train_end(self, run: Run) -> None:
        if run.deadline is not None and run.budget_seconds is not None:
            self.spent = run.budget_seconds - (run.deadline - time.monotonic())

    def measured(self, **figures: float | None) -> None:
        """Replace the estimates with the run's own figures (None: not measured this time)."""
        known: dict[str, Any] = {k: v for k, v in figures.items() if v is not None}
        self.costs = dataclasses.replace(self.costs, **known)

    def revise(self, run: Run, now: float, epoch: int, left_in_epoch: int, when: str,
               at_least: int = 0) -> None:
        """Ask again how many steps fit; ``at_least`` 1 after an epoch left unvalidated (the
        run may not end without the validation of its last epoch)."""
        assert run.deadline is not None and run.budget_seconds is not None
        seconds = run.deadline - now - MARGIN * run.budget_seconds
        more = max(at_least, steps_that_fit(seconds, self.costs, run.steps_per_epoch, epoch,
                                            left_in_epoch))
        total = agreed(run.horizon.step + more)
        if abs(total - run.horizon.total) <= self.TOLERANCE * run.horizon.total:
            return
        was = run.horizon.total
        run.horizon.revise(total)
        c = self.costs
        line = (f"time budget: {format_duration(run.deadline - now)} left {when}; a step "
                f"takes {c.step * 1000:.0f} ms, an epoch's overhead {c.overhead:.1f} s and a "
                f"validation {c.validation:.1f} s, so {total} steps in all (was {was}), "
                f"{describe_length(total, run.steps_per_epoch)}")
        self.revisions.append(line)
        run.log(line)

    def state_dict(self) -> dict[str, Any]:
        return {"costs": dataclasses.asdict(self.costs), "left": self.left,
                "revisions": self.revisions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.costs = EpochCosts(**state["costs"])
        self.left, self.revisions = state["left"], list(state["revisions"])


def agreed(value: Any) -> Any:
    """Rank 0's ``value`` on every rank under torchrun (`distributed.broadcast_object`)."""
    from descend.training import distributed  # it builds on this module: imported when used

    return distributed.broadcast_object(value)


def one_process() -> bool:
    from descend.training import distributed

    return not distributed.active()


class Progress(Callback):
    """A progress bar over each epoch's batches (``--progress``) and one log line per epoch."""

    order = 70

    rank_zero_only = True

    def __init__(self, show_bar: bool) -> None:
        # Without a terminal (a file, a pipe, CI) a bar is a stream of carriage-return frames:
        # the epoch line alone says it all there.
        self.show_bar = show_bar and sys.stderr.isatty()
        self.bar: tqdm | None = None

    def on_epoch_start(self, run: Run) -> None:
        self.bar = tqdm(total=min(run.steps_per_epoch, run.horizon.steps_left),
                        desc=f"epoch {run.epoch.index + 1}/{run.planned_epochs}",
                        disable=not self.show_bar, leave=False, unit="batch")

    def on_step_end(self, run: Run) -> None:
        running = run.epoch.running
        assert self.bar is not None and running is not None
        self.bar.update(1)
        if self.show_bar and running.steps % 10 == 0:  # each read is a host sync
            self.bar.set_postfix(loss=f"{running.loss:.3f}", acc=f"{running.acc:.3f}")

    def on_validation_start(self, run: Run) -> None:
        if self.bar is not None:  # training is over for this epoch: the bar goes
            self.bar.close()

    def on_epoch_end(self, run: Run) -> None:
        r = run.epoch.row
        val = (f"val loss {r['val_loss']:.4f} acc {r['val_acc']:.4f}"
               if r["val_acc"] is not None else "val -")
        run.log(f"epoch {r['epoch']:>3}/{run.planned_epochs}  train loss {r['train_loss']:.4f} acc "
                f"{r['train_acc']:.4f}  {val}  "
                f"lr {r['lr']:.4g}  {r['seconds']:.1f}s  {r['images_per_sec']:.0f} img/s"
                + ("  *" if run.epoch.improved else ""))


class FreezeBackbone(Callback):
    """``--freeze-epochs N``: for the first N epochs only the new head learns (the weights that
    did not come from ``--init``/``--pretrained``/``--weights``), then every weight does.

    A fresh head on top of good features first learns to use them; unfreezing earlier would send
    its large, random gradients into the pretrained layers (fastai's ``fine_tune`` does the same:
    one frozen epoch, then all).
    """

    order = 30

    key = "freeze"

    def __init__(self, epochs: int, head: list[str]) -> None:
        self.epochs, self.head = epochs, list(head)

    def on_epoch_start(self, run: Run) -> None:
        if not self.head:  # the weights fit the classes as they are: nothing to train alone
            if run.epoch.index == run.start_epoch:
                run.log("--freeze-epochs: no new head (the classes are the weights' own), so "
                        "every weight trains from the start")
            return
        frozen = run.epoch.index < self.epochs
        if run.epoch.index in (run.start_epoch, self.epochs):
            run.log(f"training only the new head ({len(self.head)} tensors) until epoch "
                    f"{self.epochs}" if frozen else "training every weight from here on")
        for name, p in run.model.named_parameters():
            p.requires_grad_(not frozen or name in self.head)

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head = list(state["head"])


class ReplaceOldRun(Callback):
    """``--overwrite``: once the new run's first ``last.pt`` exists, the old run's other files
    go and the new run's log, config and skip list (held back until then) are written."""

    order = 60

    rank_zero_only = True

    def on_epoch_end(self, run: Run) -> None:
        if run.folder.replaced:
            run.folder.take_over(written={"best.pt", "last.pt", "metrics.csv", "curves.png"})
            run.log.release()


class RunLog:
    """Prints a line (without breaking progress bars) and appends it to the run's log file.

    ``hold``: keep the lines in memory until `release` (an old run's log is still there).
    """

    def __init__(self, path: Path | None, echo: bool = True, hold: bool = False) -> None:
        self.path, self.echo = path, echo
        self.held: list[str] | None = [] if hold else None

    def __call__(self, message: str) -> None:
        if self.echo:
            tqdm.write(message)
        if self.held is not None:
            self.held.append(message + "\n")
        elif self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(message + "\n")

    def release(self) -> None:
        """Replace the log file with the lines held so far, then append as usual."""
        if self.held is not None and self.path is not None:
            atomic_write_text(self.path, "".join(self.held))
        self.held = None


def default_callbacks(run: Run) -> list[Callback]:
    """The callbacks ``descend train`` runs with, from its config (`CallbackList` puts them in
    their declared order)."""
    cfg = run.cfg
    callbacks: list[Callback] = []
    if cfg.ema_decay > 0:
        callbacks.append(EMA(run, cfg.ema_decay))
    callbacks.append(MetricsLog(run.run_dir))
    if cfg.tensorboard:
        callbacks.append(TensorBoard(run.run_dir))
    if cfg.freeze_epochs:
        callbacks.append(FreezeBackbone(cfg.freeze_epochs, run.new_weights))
    if run.budget is not None:
        callbacks.append(TimeBudget(run.budget.costs))
    callbacks.append(Checkpoint(run.run_dir))
    if run.folder.replaced:
        callbacks.append(ReplaceOldRun())
    callbacks += [Progress(cfg.progress), EarlyStopping(cfg.early_stop)]
    return callbacks


__all__ = ["METRIC_COLUMNS", "Callback", "CallbackList", "Checkpoint", "EMA", "EarlyStopping",
           "FreezeBackbone", "MetricsLog", "Progress", "ReplaceOldRun", "RunLog", "StepLosses",
           "TensorBoard", "TimeBudget", "default_callbacks"]
