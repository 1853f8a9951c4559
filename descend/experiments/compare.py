"""SPEC §2 ``descend optim compare``: train once per optimizer, overlay the curves.

The training itself is not done here (nothing in experiments knows about data or models): the
caller passes ``train(optimizer_name)``, which runs one training and returns (or yields) one
record per epoch, with the training loss of each of its steps. This module collects the runs,
draws the smoothed training loss per step beside the validation accuracy per epoch (and, when
given, lr-find's sweeps of the same optimizers), and tabulates the final figures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from descend.training.planning.lr_sweep import LRFinding

__all__ = ["CompareRun", "EpochRecord", "compare_figure", "compare_optimizers",
           "format_compare_table", "plot_compare", "smoothing_beta"]


@dataclass
class EpochRecord:
    """Figures at the end of one epoch. ``seconds`` is cumulative training time;
    ``step_losses`` the training loss of each of the epoch's steps, in order."""

    epoch: int
    seconds: float
    train_loss: float
    train_acc: float | None = None
    val_loss: float | None = None
    val_acc: float | None = None
    step_losses: list[float] = field(default_factory=list)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> EpochRecord:
        def opt(key: str) -> float | None:
            value = m.get(key)
            return None if value is None else float(value)

        return cls(int(m["epoch"]), float(m["seconds"]), float(m["train_loss"]),
                   opt("train_acc"), opt("val_loss"), opt("val_acc"),
                   [float(v) for v in m.get("step_losses") or ()])


@dataclass
class CompareRun:
    optimizer: str
    epochs: list[EpochRecord] = field(default_factory=list)
    error: str | None = None  # a run that raised is kept, with its message, not lost
    lr: float | None = None  # the rate it trained at, where the caller said

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON values (``descend optim compare --json``)."""
        return {"optimizer": self.optimizer, "lr": self.lr, "error": self.error,
                "best_val_acc": self.best_val_acc,
                "epochs": [dataclasses.asdict(e) for e in self.epochs]}

    @property
    def final(self) -> EpochRecord | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def best_val_acc(self) -> float | None:
        accs = [e.val_acc for e in self.epochs if e.val_acc is not None]
        return max(accs) if accs else None

    @property
    def step_losses(self) -> list[float]:
        """The training loss of every step of the run, epoch after epoch."""
        return [loss for e in self.epochs for loss in e.step_losses]

    @property
    def epoch_ends(self) -> list[int]:
        """The step at which each epoch ended (and was validated)."""
        return list(accumulate(len(e.step_losses) for e in self.epochs))


Train = Callable[[str], Iterable[EpochRecord | Mapping[str, Any]]]


def compare_optimizers(train: Train, optimizers: Sequence[str], keep_going: bool = True,
                       lrs: Mapping[str, float] | None = None) -> list[CompareRun]:
    """Run ``train(name)`` for each optimizer name, in order, and collect its epochs;
    ``lrs``, the rate each trains at, labels the figure.

    A run that raises (a divergence caught by the trainer, say) is recorded with its message
    when ``keep_going``, so that one bad learning rate does not lose the other runs.
    """
    runs = []
    for name in optimizers:
        run = CompareRun(name, lr=(lrs or {}).get(name))
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


def smoothing_beta(steps: int) -> float:
    """The decay of the average that smooths a curve of ``steps`` steps: lr-find's 0.98 (a
    window of about 50 steps) for a long run, a window of a 15th of the run for a shorter one.
    The average lags about a window behind the loss, and a lag of 50 steps visibly bends a
    300-step curve's fall; a window of 10 there leaves the curves too noisy to rank (both
    tried on the README's run)."""
    window = min(50, max(5, steps // 15))
    return 1 - 1 / window


def plot_compare(runs: list[CompareRun], path: str | Path,
                 findings: Sequence[LRFinding] = (), label_smoothing: float = 0.0) -> Path:
    """`compare_figure` as a PNG at ``path``."""
    from descend.reports.plots import save_figure

    save_figure(compare_figure(runs, findings, label_smoothing), path)
    return Path(path)


def compare_figure(runs: list[CompareRun], findings: Sequence[LRFinding] = (),
                   label_smoothing: float = 0.0) -> Figure:
    """The smoothed training loss of every step (the raw loss faint behind it) and the
    validation accuracy after each epoch, one colour per optimizer; with ``findings`` (lr-find
    sweeps of the same optimizers) a third panel of their curves, the rate each run trained
    at marked on its own. One legend for the figure, one entry per optimizer.
    ``label_smoothing``: the one the runs trained with, named on the loss axis."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    from descend.reports.lr_plot import draw_lr_find, nearest
    from descend.training.planning.lr_sweep import smooth

    fig = Figure(figsize=(15 if findings else 11, 4.6), layout="constrained")
    ax_loss, ax_acc, *rest = fig.subplots(1, 3 if findings else 2)
    colors = {run.optimizer: f"C{i}" for i, run in enumerate(runs)}
    by_step = any(run.step_losses for run in runs)
    handles, labels, low, high = [], [], math.inf, 0.0
    for run in runs:
        color, losses = colors[run.optimizer], run.step_losses
        if by_step:
            steps = range(1, len(losses) + 1)
            smoothed = smooth(losses, smoothing_beta(len(losses)))
            ax_loss.plot(steps, losses, color=color, alpha=0.15, lw=0.6)
            (line,) = ax_loss.plot(steps, smoothed, color=color, lw=1.6)
            ends = run.epoch_ends
        else:  # records without their steps: the loss per epoch
            smoothed = [e.train_loss for e in run.epochs]
            ends = [e.epoch for e in run.epochs]
            (line,) = ax_loss.plot(ends, smoothed, "-o", ms=3, color=color)
        finite = [v for v in smoothed if math.isfinite(v) and v > 0]
        if finite:
            low, high = min(low, *finite), max(high, *finite)
        validated = [(end, e.val_acc) for end, e in zip(ends, run.epochs) if e.val_acc is not None]
        if validated:
            ax_acc.plot([x for x, _ in validated], [100 * a for _, a in validated], "-o", ms=4,
                        color=color)
        handles.append(line)
        labels.append(_legend_label(run, findings))
    # A run that learns lowers its loss by decades, and the optimizers part where it is small:
    # a log axis gives that part room. A loss held above a floor (label smoothing's, or a run
    # too short to get far) spans less than a decade, and a log axis would only bend it.
    log_axis = 0 < low and high / low > 10
    if 0 < low < high:  # from the smoothed curves: the raw loss's spikes do not set the range
        if log_axis:
            margin = (high / low) ** 0.04
            ax_loss.set_ylim(low / margin, high * margin)
        else:
            pad = 0.04 * (high - low)
            ax_loss.set_ylim(low - pad, high + pad)
    smoothing = f", label smoothing {label_smoothing:g}" if label_smoothing else ""
    ax_loss.set(xlabel="step" if by_step else "epoch", yscale="log" if log_axis else "linear",
                ylabel=f"training loss (cross-entropy{smoothing})",
                title="Training loss per step (smoothed; raw loss faint)" if by_step
                else "Training loss per epoch")
    ax_acc.set(xlabel="step" if by_step else "epoch", ylabel="validation accuracy (%)",
               title="Validation accuracy after each epoch")
    if findings:
        ax_lr = rest[0]
        draw_lr_find(ax_lr, findings, [colors.get(f.optimizer) for f in findings])
        for f in findings:  # the rate the comparison trained at, on the optimizer's own sweep
            lr = next((r.lr for r in runs if r.optimizer == f.optimizer), None)
            if lr is not None and f.lrs and f.lrs[0] <= lr <= f.lrs[-1]:
                ax_lr.plot([lr], [f.smoothed[nearest(f.lrs, lr)]], "x", ms=8, mew=2,
                           color=colors.get(f.optimizer))
        ax_lr.grid(False, which="minor")  # nine lines a decade crowd a panel this narrow
        ax_lr.set_title("lr-find (dot: suggested rate, x: rate compared)")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3, which="both" if ax is ax_loss and log_axis else "major")
    # One row for up to six optimizers; more take two rows rather than widen the page.
    fig.legend(handles, labels, loc="outside lower center",
               ncols=len(runs) if len(runs) <= 6 else -(-len(runs) // 2), frameon=False)
    return fig


def _legend_label(run: CompareRun, findings: Sequence[LRFinding] = ()) -> str:
    """"adam, lr 0.001" (", lr-find 0.02" with a sweep that suggests, " (stopped)" for a run
    that raised)."""
    label = run.optimizer + (f", lr {run.lr:g}" if run.lr is not None else "")
    finding = next((f for f in findings if f.optimizer == run.optimizer), None)
    if finding is not None and finding.suggestion is not None:
        label += f", lr-find {finding.suggestion:.2g}"
    return label + (" (stopped)" if run.error else "")
