"""The figure of ``descend lr-find``: smoothed loss against learning rate, one curve per
optimizer, each with its suggestion marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from descend.reports.plots import save_figure
from descend.training.lr_find import LRFinding


def plot_lr_find(findings: Sequence[LRFinding], path: str | Path, title: str = "") -> None:
    """Smoothed training loss against the learning rate (log scale) for each sweep; a dot at
    each suggested rate. The loss axis stops at 1.5x the starting loss, so a divergence does
    not flatten the part that matters."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    top, bottom = 0.0, float("inf")
    for f in findings:
        if not f.lrs:
            continue
        (line,) = ax.plot(f.lrs, f.smoothed, label=f.optimizer)
        if (rate := f.suggestion) is not None:
            i = f.lrs.index(rate) if rate in f.lrs else 0
            ax.plot([rate], [f.smoothed[i]], "o", color=line.get_color())
            line.set_label(f"{f.optimizer}: {rate:.2g}")
        top = max(top, f.smoothed[0] * 1.5)
        bottom = min(bottom, min(f.smoothed))
    ax.set_xscale("log")
    if top > 0 and bottom < top:
        ax.set_ylim(bottom * 0.95, top)
    ax.set(xlabel="learning rate", ylabel="smoothed training loss",
           title=title or "learning-rate range test (dot: suggested rate)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, path)
