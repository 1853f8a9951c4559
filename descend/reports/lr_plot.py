"""The figure of ``descend lr-find``: smoothed loss against learning rate, one curve per
optimizer, each with its suggestion marked. ``descend optim compare --lr-find`` draws the same
panel beside its training curves (`draw_lr_find`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from descend.reports.plots import save_figure


class LRFinding(Protocol):
    """A learning-rate sweep as drawn here (`descend.training.planning.lr_sweep.LRFinding` is
    one): its rates, the smoothed loss at each, the optimizer's name and the suggested rate."""

    @property
    def lrs(self) -> Sequence[float]: ...
    @property
    def smoothed(self) -> Sequence[float]: ...
    @property
    def optimizer(self) -> str: ...
    @property
    def suggestion(self) -> float | None: ...


def plot_lr_find(findings: Sequence[LRFinding], path: str | Path, title: str = "") -> None:
    """Smoothed training loss against the learning rate (log scale) for each sweep; a dot at
    each suggested rate."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    draw_lr_find(ax, findings)
    ax.set_title(title or "learning-rate range test (dot: suggested rate)")
    ax.legend()
    save_figure(fig, path)


def draw_lr_find(ax: Axes, findings: Sequence[LRFinding],
                 colors: Sequence[str | None] | None = None) -> None:
    """The sweeps on ``ax``, each line labelled "optimizer: suggestion" and in ``colors[i]``
    where given. The loss axis stops at 1.5x the starting loss, so a divergence does not
    flatten the part that matters."""
    top, bottom = 0.0, float("inf")
    for i, f in enumerate(findings):
        if not f.lrs:
            continue
        (line,) = ax.plot(f.lrs, f.smoothed, label=f.optimizer,
                          color=colors[i] if colors else None)
        if (rate := f.suggestion) is not None:
            ax.plot([rate], [f.smoothed[nearest(f.lrs, rate)]], "o", color=line.get_color())
            line.set_label(f"{f.optimizer}: {rate:.2g}")
        top = max(top, f.smoothed[0] * 1.5)
        bottom = min(bottom, min(f.smoothed))
    ax.set_xscale("log")
    if top > 0 and bottom < top:
        ax.set_ylim(bottom * 0.95, top)
    ax.set(xlabel="learning rate", ylabel="smoothed training loss")
    ax.grid(alpha=0.3, which="both")


def nearest(lrs: Sequence[float], rate: float) -> int:
    """The index of the sweep's rate nearest ``rate`` on a log scale (a suggestion such as
    the minimum's rate / 10 falls between the sweep's rates, or before its first)."""
    return min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / rate)))
