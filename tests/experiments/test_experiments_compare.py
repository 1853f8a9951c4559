"""SPEC §2 compare: real (tiny) trainings, one per optimizer, collected and drawn."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from torch import nn

from descend.experiments.compare import (
    EpochRecord,
    compare_figure,
    compare_optimizers,
    format_compare_table,
    plot_compare,
    smoothing_beta,
)
from descend.optim import OPTIMIZERS
from descend.training.planning.lr_sweep import LRFinding, smooth, suggest

LRS = {"sgd": 0.5, "momentum": 0.1, "adam": 0.05, "rmsprop": 0.05}


def train_logistic(name: str):
    """A real training closure: logistic regression on two Gaussian blobs, 5 epochs."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 2, generator=gen) + 1.5,
                   torch.randn(200, 2, generator=gen) - 1.5])
    y = torch.cat([torch.ones(200), torch.zeros(200)]).long()
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    opt = OPTIMIZERS.get(name)(model.parameters(), lr=LRS[name])
    start = time.perf_counter()
    for epoch in range(1, 6):
        step_losses = []
        for i in range(0, 400, 50):
            idx = torch.arange(i, i + 50)
            loss = nn.functional.cross_entropy(model(x[idx * 7 % 400]), y[idx * 7 % 400])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_losses.append(float(loss.detach()))
        with torch.no_grad():
            logits = model(x)
            record = {"epoch": epoch, "seconds": time.perf_counter() - start,
                      "train_loss": float(nn.functional.cross_entropy(logits, y)),
                      "train_acc": float((logits.argmax(1) == y).float().mean()),
                      "val_acc": float((logits.argmax(1) == y).float().mean()),
                      "step_losses": step_losses}
        yield record if epoch % 2 else EpochRecord.from_mapping(record)


def test_compare_collects_runs_table_and_plot(tmp_path: Path) -> None:
    runs = compare_optimizers(train_logistic, list(LRS), lrs=LRS)
    assert [r.optimizer for r in runs] == list(LRS) and [r.lr for r in runs] == list(LRS.values())
    for run in runs:
        assert [e.epoch for e in run.epochs] == [1, 2, 3, 4, 5] and run.error is None
        assert len(run.step_losses) == 5 * 8 and run.epoch_ends == [8, 16, 24, 32, 40]
        assert run.final.train_acc > 0.9  # the blobs are separable: every optimizer learns
        assert run.final.train_loss < min(0.3, run.epochs[0].train_loss)
    table = format_compare_table(runs)
    assert all(name in table for name in LRS) and len(table.splitlines()) == 2 + len(LRS)
    out = plot_compare(runs, tmp_path / "compare.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_a_failing_run_is_kept_with_its_message() -> None:
    def train(name: str):
        yield {"epoch": 1, "seconds": 0.1, "train_loss": 1.0, "val_acc": 0.5}
        if name == "bad":
            raise FloatingPointError("loss is NaN")
        yield {"epoch": 2, "seconds": 0.2, "train_loss": 0.5, "val_acc": 0.7}

    runs = compare_optimizers(train, ["good", "bad"])
    assert runs[0].best_val_acc == 0.7 and runs[1].error == "FloatingPointError: loss is NaN"
    assert "stopped: FloatingPointError" in format_compare_table(runs)
    with pytest.raises(FloatingPointError):
        compare_optimizers(train, ["bad"], keep_going=False)
    bad = json.loads(json.dumps(runs[1].to_dict()))  # `optim compare --json`
    assert bad["error"] == "FloatingPointError: loss is NaN" and bad["best_val_acc"] == 0.5
    assert bad["epochs"][0]["train_loss"] == 1.0


def sweep_of(name: str, fall_at: float) -> LRFinding:
    """A made-up lr-find sweep whose loss falls around ``fall_at`` and blows up 2 decades on."""
    lrs = list(np.logspace(-6, 1, 100))
    x = np.log10(lrs)
    loss = 2.3 - 2 / (1 + np.exp(-(x - math.log10(fall_at)) * 3)) \
        + np.where(x > math.log10(fall_at) + 2, 10.0, 0.0)
    finding = LRFinding(name, lrs, list(loss), smooth(loss))
    finding.suggestion, finding.steepest = suggest(lrs, finding.smoothed)
    return finding


def test_the_figure_has_one_colour_and_one_legend_entry_per_optimizer() -> None:
    runs = compare_optimizers(train_logistic, list(LRS), lrs=LRS)
    fig = compare_figure(runs)
    loss_ax, acc_ax = fig.axes
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "sgd, lr 0.5", "momentum, lr 0.1", "adam, lr 0.05", "rmsprop, lr 0.05"]
    assert not loss_ax.get_legend() and not acc_ax.get_legend()  # the figure's is the only one
    for ax in (loss_ax, acc_ax):
        assert len({to_hex(line.get_color()) for line in ax.get_lines()}) == len(LRS)
    # the loss panel: the raw loss and its smoothed curve, a point per step, for each optimizer
    for run, raw, smoothed in zip(runs, loss_ax.get_lines()[::2], loss_ax.get_lines()[1::2]):
        assert list(raw.get_ydata()) == run.step_losses
        assert list(smoothed.get_ydata()) == smooth(run.step_losses, smoothing_beta(40))
        assert list(smoothed.get_xdata()) == list(range(1, 41))
    # the accuracy panel: a point after each epoch, at the step it ended on
    assert [list(line.get_xdata()) for line in acc_ax.get_lines()] == [[8, 16, 24, 32, 40]] * 4
    assert loss_ax.get_yscale() == "log"  # separable blobs: the loss falls by decades
    assert loss_ax.get_ylabel() == "training loss (cross-entropy)"


def test_lr_find_sweeps_make_a_third_panel_in_the_same_colours() -> None:
    runs = compare_optimizers(train_logistic, ["sgd", "adam"], lrs=LRS)
    findings = [sweep_of("sgd", 1e-2), sweep_of("adam", 1e-4)]
    fig = compare_figure(runs, findings, label_smoothing=0.1)
    assert len(fig.axes) == 3 and len(compare_figure(runs).axes) == 2
    loss_ax, _, lr_ax = fig.axes
    assert lr_ax.get_xscale() == "log" and lr_ax.get_xlabel() == "learning rate"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == 2 and labels[0].startswith("sgd, lr 0.5, lr-find ")
    colors = {run.optimizer: to_hex(line.get_color())
              for run, line in zip(runs, loss_ax.get_lines()[1::2])}
    for f in findings:  # each sweep in its optimizer's colour; its suggestion dot on its curve
        curve, *marks = [ln for ln in lr_ax.get_lines() if to_hex(ln.get_color()) == colors[
            f.optimizer]]
        assert list(curve.get_xdata()) == f.lrs
        assert f.suggestion is not None and marks[0].get_xdata()[0] == f.suggestion
        on_curve = np.interp(np.log(f.suggestion), np.log(f.lrs), f.smoothed)
        assert marks[0].get_ydata()[0] == pytest.approx(on_curve, abs=0.05)
        assert marks[1].get_xdata()[0] == LRS[f.optimizer]  # x: the rate the run trained at
    assert loss_ax.get_ylabel() == "training loss (cross-entropy, label smoothing 0.1)"


def test_the_smoothing_window_follows_the_run_length() -> None:
    assert smoothing_beta(10_000) == 0.98  # lr-find's, on a long run
    assert smoothing_beta(300) == pytest.approx(0.95)  # a window of 20 steps
    assert smoothing_beta(40) == pytest.approx(0.8)  # never shorter than 5
