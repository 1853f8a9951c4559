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
``rank_zero_only``: under torchrun only rank 0 runs it (`descend.training.fitting.distributed`).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from descend.errors import ConfigError
from descend.io import atomic_write_text
from descend.optim import ModelEMA
from descend.runtime.checkpoint import read_checkpoint, save_checkpoint
from descend.training.fitting import distributed
from descend.training.fitting.budget import TimeBudget
from descend.training.fitting.hooks import Callback, CallbackList

if TYPE_CHECKING:
    from descend.training.fitting.run import Run

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "images_per_sec", "val_seconds"]


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
    """Per-epoch rows, written to ``metrics.csv`` after each epoch, and drawn to ``curves.png``.

    A drawing takes about 0.35 s on a 2-core CPU (matplotlib's PNG), which was most of an epoch
    on a small dataset: 84 epochs of 48 images spent 32 s of 42 drawing. So the curves are
    redrawn once the run has spent `CURVES_SHARE` times the last drawing's seconds since it
    (drawing then takes at most about a thirtieth of the run), and after the first and the last
    epoch always: an epoch of a minute redraws them every epoch, a run of short epochs about
    every 10 s. ``metrics.csv``, written every epoch, stays the record.
    """

    order = 20

    rank_zero_only = True

    CURVES_SHARE = 30  # redraw once the run has spent this many times a drawing's seconds

    def __init__(self, run_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir, self.clock = run_dir, clock
        self.drawn_rows = 0  # rows in the latest curves.png
        self.next_draw = 0.0  # the clock's time from which a redraw is due

    def on_train_start(self, run: Run) -> None:
        # Imported before the first epoch: matplotlib's import (half a second) would otherwise
        # read as the first epoch's end, which a time budget then reserves for the last one.
        import descend.reports.plots  # noqa: F401

    def on_epoch_end(self, run: Run) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for r in run.history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k in METRIC_COLUMNS for v in [r.get(k, "")]})
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
        if self.clock() >= self.next_draw or not run.horizon.steps_left:
            self.draw(run)

    def on_train_end(self, run: Run) -> None:
        if self.drawn_rows != len(run.history):  # stopped early, or the last was not due
            self.draw(run)

    def draw(self, run: Run) -> None:
        from descend.reports.plots import plot_curves

        start = self.clock()
        plot_curves(run.history, self.run_dir / "curves.png")
        end = self.clock()
        self.drawn_rows, self.next_draw = len(run.history), end + self.CURVES_SHARE * (end - start)


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
        # The parameters the model itself trains (not its fixed ones, such as fastres's
        # whitening filters), read before the first change: unfreezing gives back these alone.
        self.trainable: set[str] | None = None

    def on_epoch_start(self, run: Run) -> None:
        if not self.head:  # the weights fit the classes as they are: nothing to train alone
            if run.epoch.index == run.start_epoch:
                run.log("--freeze-epochs: no new head (the classes are the weights' own), so "
                        "every weight trains from the start")
            return
        if self.trainable is None:
            self.trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
        frozen = run.epoch.index < self.epochs
        if run.epoch.index in (run.start_epoch, self.epochs):
            run.log(f"training only the new head ({len(self.head)} tensors) until epoch "
                    f"{self.epochs}" if frozen else "training every weight from here on")
        for name, p in run.model.named_parameters():
            p.requires_grad_(name in self.trainable and (not frozen or name in self.head))

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head = list(state["head"])


class ModelSchedule(Callback):
    """The model's own per-epoch changes (a model with an ``epoch_start(epoch)`` method):
    fastres stops training its whitening bias after ``whiten_bias_epochs``. After
    `FreezeBackbone`, so that the model's choice stands."""

    order = 31

    def on_epoch_start(self, run: Run) -> None:
        schedule = getattr(run.model, "epoch_start", None)
        if callable(schedule) and (line := schedule(run.epoch.index)):
            run.log(line)


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


class RankSync(Callback):
    """Keeps the ranks of a torchrun run in step; it comes after every other callback.

    Before each evaluation every rank takes rank 0's weights and buffers of the model it
    validates (the EMA's, when there is one), so all evaluate the model rank 0 saves; after
    each epoch every rank stops if rank 0 stops (its early stopping, a time budget: one
    decision, or the ranks would wait on each other forever); at the end every rank takes rank
    0's best weights for the test split.
    """

    order = 1000  # after every other callback

    def on_validation_start(self, run: Run) -> None:
        distributed.broadcast_state(run.averaged_model() or run.model)  # what this epoch validates

    def on_epoch_end(self, run: Run) -> None:
        run.epoch.stop = distributed.broadcast_object(run.epoch.stop)

    def on_train_end(self, run: Run) -> None:
        distributed.broadcast_state(run.model)


def rank_callbacks(callbacks: list[Callback]) -> list[Callback]:
    """The callbacks this process runs: all of them in one process; under torchrun, rank 0
    runs all, the other ranks those not marked ``rank_zero_only``, and all end with
    `RankSync`."""
    if not distributed.active():
        return callbacks
    main = distributed.world().is_main
    return [cb for cb in callbacks if main or not cb.rank_zero_only] + [RankSync()]


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
    if callable(getattr(run.model, "epoch_start", None)):
        callbacks.append(ModelSchedule())
    if run.time_budget is not None:
        callbacks.append(run.time_budget)
    callbacks.append(Checkpoint(run.run_dir))
    if run.folder.replaced:
        callbacks.append(ReplaceOldRun())
    callbacks += [Progress(cfg.progress), EarlyStopping(cfg.early_stop)]
    return callbacks


__all__ = ["METRIC_COLUMNS", "Callback", "CallbackList", "Checkpoint", "EMA", "EarlyStopping",
           "FreezeBackbone", "MetricsLog", "ModelSchedule", "Progress", "RankSync",
           "ReplaceOldRun", "RunLog", "StepLosses",
           "TensorBoard", "TimeBudget", "default_callbacks", "rank_callbacks"]
