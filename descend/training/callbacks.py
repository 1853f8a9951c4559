"""Small pieces of a training run, each with one job: early stopping, the best-metric tracker,
the metrics log (CSV and curves), and the run log."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from descend.io import atomic_write_text

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "images_per_sec"]


def better(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Is ``value`` an improvement on ``best`` by more than ``min_delta``? (acc up, loss down)"""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    if metric.endswith("acc"):
        return value > best + min_delta
    return value < best - min_delta


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str = "val_acc"
    patience: int = 0
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; True when training should stop."""
        if better(self.monitor, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@dataclass
class MetricsLog:
    """Per-epoch rows, written to ``metrics.csv`` and drawn to ``curves.png`` after each epoch."""

    run_dir: Path
    rows: list[dict[str, float]] = field(default_factory=list)

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])
                             for k in METRIC_COLUMNS})
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
        from descend.reports.plots import plot_curves

        plot_curves(self.rows, self.run_dir / "curves.png")


class RunLog:
    """Prints a line (without breaking progress bars) and appends it to the run's log file."""

    def __init__(self, path: Path | None, echo: bool = True) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        if self.echo:
            tqdm.write(message)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(message + "\n")
