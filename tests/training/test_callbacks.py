"""The callback protocol: hook order, state carried over --resume, stopping from a callback."""

from pathlib import Path
from typing import Any

import pytest

from descend.config import TrainConfig
from descend.runtime.checkpoint import read_checkpoint
from descend.training.fitting.callbacks import Callback, StepLosses
from descend.training.fitting.monitor import BestMetric
from descend.training.fitting.run import Run
from descend.training.trainer import train


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=f"imagefolder:{data}", model="mlp", epochs=2, batch_size=8, image_size=16,
                out=str(out), progress=False, download=False, lr=0.05)
    return TrainConfig(**{**base, **kw})


class Recorder(Callback):
    """Records the hooks it sees; counts steps as state that must survive a resume."""

    key = "recorder"

    def __init__(self) -> None:
        self.hooks: list[str] = []
        self.steps = 0

    def on_train_start(self, run: Run) -> None:
        self.hooks.append("train_start")

    def on_epoch_start(self, run: Run) -> None:
        self.hooks.append(f"epoch_start {run.epoch.index}")

    def on_step_end(self, run: Run) -> None:
        self.steps += 1
        if not self.hooks[-1].startswith("step"):
            self.hooks.append("step")

    def on_validation_start(self, run: Run) -> None:
        self.hooks.append("validation_start")

    def on_validation_end(self, run: Run) -> None:
        self.hooks.append("validation_end")

    def on_epoch_end(self, run: Run) -> None:
        self.hooks.append(f"epoch_end {run.epoch.row['epoch']} improved={run.epoch.improved}")

    def on_train_end(self, run: Run) -> None:
        self.hooks.append("train_end")

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


def test_hooks_come_in_order(image_folder: Path, tmp_path: Path) -> None:
    rec = Recorder()
    train(_cfg(image_folder, tmp_path / "run"), callbacks=[rec])
    assert rec.hooks[:10] == [
        "train_start",
        "epoch_start 0", "step", "validation_start", "validation_end", "epoch_end 1 improved=True",
        "epoch_start 1", "step", "validation_start", "validation_end",
    ]
    assert rec.hooks[10].startswith("epoch_end 2") and rec.hooks[11:] == ["train_end"]
    assert rec.steps == 2 * 6  # 48 training images, batch 8, two epochs


def test_callback_state_survives_resume(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_cfg(image_folder, run, epochs=1, schedule="constant"), callbacks=[Recorder()])
    assert read_checkpoint(run / "last.pt")["recorder"] == {"steps": 6}
    resumed = Recorder()
    train(resume=run, epochs=2, callbacks=[resumed])
    assert resumed.steps == 12  # loaded 6, then one more epoch of 6
    assert resumed.hooks[1] == "epoch_start 1"


def test_step_losses_keeps_the_loss_of_every_step(image_folder: Path, tmp_path: Path) -> None:
    steps = StepLosses()
    result = train(_cfg(image_folder, tmp_path / "run"), callbacks=[steps])
    assert [len(losses) for losses in steps.epochs] == [6, 6]  # 48 images, batch 8
    for losses, row in zip(steps.epochs, result.history):  # whole batches: the epoch's mean
        assert sum(losses) / len(losses) == pytest.approx(row["train_loss"], rel=1e-5)


class StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, run: Run) -> None:
        run.epoch.stop = "enough"


def test_a_callback_can_stop_the_run(image_folder: Path, tmp_path: Path) -> None:
    result = train(_cfg(image_folder, tmp_path / "run", epochs=5),
                   callbacks=[StopAfterFirstEpoch()])
    assert [r["epoch"] for r in result.history] == [1]
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1


def test_best_metric_improves_by_more_than_min_delta() -> None:
    acc = BestMetric("val_acc", min_delta=0.01)
    assert [acc.update(e, v) for e, v in enumerate([0.5, 0.505, 0.52, 0.4], 1)] == [
        True, False, True, False]
    assert (acc.best, acc.best_epoch) == (0.52, 3)
    loss = BestMetric("val_loss")
    assert [loss.update(e, v) for e, v in enumerate([1.0, float("nan"), 0.9], 1)] == [
        True, False, True]


def test_early_stopping_counts_measured_epochs_since_the_best_from_the_history() -> None:
    """The count is read from the run's record, so a resumed run (history from last.pt) counts
    on; epochs without validation do not count."""
    from types import SimpleNamespace

    from descend.training.fitting.callbacks import EarlyStopping, epochs_since_best
    from descend.training.fitting.run import Epoch

    rows = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.6},
            {"epoch": 3, "val_acc": None}, {"epoch": 4, "val_acc": 0.55},
            {"epoch": 5, "val_acc": 0.58}]
    best = BestMetric("val_acc")
    for r in rows:
        if r["val_acc"] is not None:
            best.update(r["epoch"], r["val_acc"])
    logged: list[str] = []
    run = SimpleNamespace(history=rows, best=best, epoch=Epoch(4, 0.1), log=logged.append)
    assert epochs_since_best(run) == 2  # epochs 4 and 5; epoch 3 was not validated
    EarlyStopping(3).on_epoch_end(run)
    assert run.epoch.stop is None
    EarlyStopping(2).on_epoch_end(run)
    assert run.epoch.stop == "early stopping: val_acc has not improved for 2 epochs"
    assert logged == [run.epoch.stop]
    never = SimpleNamespace(history=rows[:1], best=BestMetric("val_acc"))
    assert epochs_since_best(never) == 1  # no best yet: every measured epoch counts


def test_callbacks_run_in_their_declared_order_whatever_the_list_says() -> None:
    from descend.training.fitting.callbacks import (
        EMA,
        CallbackList,
        Checkpoint,
        EarlyStopping,
        MetricsLog,
        ReplaceOldRun,
        TimeBudget,
    )

    calls: list[str] = []

    def tracing(cls: type) -> type:
        return type(cls.__name__, (cls,), {
            "__init__": lambda self: None,
            "on_epoch_end": lambda self, run: calls.append(type(self).__name__)})

    mine = tracing(Callback)
    classes = [EarlyStopping, ReplaceOldRun, Checkpoint, TimeBudget, MetricsLog, EMA]
    CallbackList([tracing(c)() for c in classes] + [mine()]).on_epoch_end(None)  # type: ignore[arg-type]
    # What each needs: the validated weights (EMA) before any record, the budget's revisions
    # before last.pt, the new run's last.pt before the old one is replaced; yours after all.
    assert calls == ["EMA", "MetricsLog", "TimeBudget", "Checkpoint", "ReplaceOldRun",
                     "EarlyStopping", "Callback"]


def test_the_curves_are_redrawn_when_due_and_always_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drawing costs about 0.35 s: a run of short epochs must not spend most of its time on
    curves.png (84 epochs of 48 images spent 32 s of 42 on it), and the file ends complete."""
    from types import SimpleNamespace

    import descend.reports.plots as plots
    from descend.training.fitting.callbacks import MetricsLog

    now = [0.0]
    drawn: list[int] = []

    def plot(rows: list[dict[str, Any]], path: Path) -> None:
        drawn.append(len(rows))
        now[0] += 0.5  # the drawing's own seconds

    monkeypatch.setattr(plots, "plot_curves", plot)
    log = MetricsLog(tmp_path, clock=lambda: now[0])
    run = SimpleNamespace(history=[], horizon=SimpleNamespace(steps_left=100))
    for epoch in range(1, 61):  # epochs of one second, the last with no steps left
        now[0] += 1.0
        run.history.append({"epoch": epoch, "train_loss": 1.0, "train_acc": 0.5})
        run.horizon.steps_left = 0 if epoch == 60 else 100
        log.on_epoch_end(run)  # type: ignore[arg-type]
    log.on_train_end(run)  # type: ignore[arg-type]
    # Epoch 1, then once 30 drawings' seconds (15 s) have passed: every 15 epochs; and the last.
    assert drawn == [1, 16, 31, 46, 60]
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 61  # every epoch's row

    drawn.clear()
    run.history.append({"epoch": 61, "train_loss": 1.0, "train_acc": 0.5})
    log.on_train_end(run)  # type: ignore[arg-type]  # e.g. stopped early: drawn at the end
    log.on_train_end(run)  # type: ignore[arg-type]  # and not twice
    assert drawn == [61]
