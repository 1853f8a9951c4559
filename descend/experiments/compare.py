"""SPEC §2 ``descend optim compare``: train once per optimizer, overlay the curves.

The training itself is not done here (nothing in experiments knows about data or models): the
caller passes ``train(optimizer_name)``, which runs one training and returns (or yields) one
record per epoch. This module collects the runs, draws loss and accuracy against epochs and
against seconds, and tabulates the final figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CompareRun", "EpochRecord", "compare_optimizers", "format_compare_table",
           "plot_compare"]


@dataclass
class EpochRecord:
    """Figures at the end of one epoch. ``seconds`` is cumulative training time."""

    epoch: int
    seconds: float
    train_loss: float
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> EpochRecord:
        def opt(key: str) -> float | None:
            value = m.get(key)
            return None if value is None else float(value)

        return cls(int(m["epoch"]), float(m["seconds"]), float(m["train_loss"]),
                   opt("train_acc"), opt("val_loss"), opt("val_acc"))


@dataclass
class CompareRun:
    optimizer: str
    epochs: list[EpochRecord] = field(default_factory=list)
    error: str | None = None  # a run that raised is kept, with its message, not lost

    @property
    def final(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def best_val_acc(self) -> float | None:
        accs = [e.val_acc for e in self.epochs if e.val_acc is not None]
        return max(accs) if accs else None


Train = Callable[[str], Iterable[EpochRecord | Mapping[str, Any]]]


def compare_optimizers(train: Train, optimizers: Sequence[str],
                       keep_going: bool = True) -> list[CompareRun]:
    """Run ``train(name)`` for each optimizer name, in order, and collect its epochs.

    A run that raises (a divergence caught by the trainer, say) is recorded with its message
    when ``keep_going``, so that one bad learning rate does not lose the other runs.
    """
    runs = []
    for name in optimizers:
        run = CompareRun(name)
        try:
            for record in train(name):
                if not isinstance(record, EpochRecord):
                    record = EpochRecord.from_mapping(record)
                run.epochs.append(record)
        except Exception as exc:  # noqa: BLE001 - reported in the table, see docstring
            if not keep_going:
                raise
            run.error = f"{type(exc).__name__}: {exc}"
        runs.append(run)
    return runs


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def format_compare_table(runs: list[CompareRun]) -> str:
    """Final figures per optimizer: losses, accuracies (best too), epochs and seconds."""
    header = (f"{'optimizer':<10} {'epochs':>6} {'train loss':>10} {'train acc':>9} "
              f"{'val loss':>9} {'val acc':>8} {'best val':>8} {'seconds':>8}")
    lines = [header, "-" * len(header)]
    for run in runs:
        f = run.final
        if f is None:
            lines.append(f"{run.optimizer:<10} {'0':>6}  no epoch finished: {run.error or '?'}")
            continue
        line = (f"{run.optimizer:<10} {f.epoch:>6} {_fmt(f.train_loss, '.4f'):>10} "
                f"{_fmt(f.train_acc, '.2%'):>9} {_fmt(f.val_loss, '.4f'):>9} "
                f"{_fmt(f.val_acc, '.2%'):>8} {_fmt(run.best_val_acc, '.2%'):>8} "
                f"{f.seconds:>8.1f}")
        if run.error:
            line += f"  stopped: {run.error}"
        lines.append(line)
    return "\n".join(lines)


def plot_compare(runs: list[CompareRun], path: str | Path) -> Path:
    """PNG, 2 x 2: loss and accuracy against epochs and against seconds, one line per
    optimizer (solid: validation where there is one, dashed: training)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    from descend.reports.plots import save_figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for i, run in enumerate(runs):
        if not run.epochs:
            continue
        color = f"C{i}"
        epochs = [e.epoch for e in run.epochs]
        seconds = [e.seconds for e in run.epochs]
        for col, xs in enumerate((epochs, seconds)):
            for row, (train_key, val_key) in enumerate((("train_loss", "val_loss"),
                                                        ("train_acc", "val_acc"))):
                ax = axes[row, col]
                train = [getattr(e, train_key) for e in run.epochs]
                val = [getattr(e, val_key) for e in run.epochs]
                if any(v is not None for v in val):
                    ax.plot(xs, [math.nan if v is None else v for v in val], "-o", ms=3,
                            color=color, label=f"{run.optimizer} val")
                if any(v is not None for v in train):
                    ax.plot(xs, [math.nan if v is None else v for v in train], "--",
                            color=color, alpha=0.7, label=f"{run.optimizer} train")
    for col, xlabel in enumerate(("epoch", "seconds")):
        axes[0, col].set(xlabel=xlabel, ylabel="loss", yscale="log", title=f"Loss per {xlabel}")
        axes[1, col].set(xlabel=xlabel, ylabel="accuracy", title=f"Accuracy per {xlabel}")
    for ax in axes.ravel():
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    save_figure(fig, path)
    return Path(path)
