"""SPEC §2 compare: real (tiny) trainings, one per optimizer, collected and drawn."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from descend.experiments.compare import (
    EpochRecord,
    compare_optimizers,
    format_compare_table,
    plot_compare,
)
from descend.optim import OPTIMIZERS

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
        for i in range(0, 400, 50):
            idx = torch.arange(i, i + 50)
            loss = nn.functional.cross_entropy(model(x[idx * 7 % 400]), y[idx * 7 % 400])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = model(x)
            record = {"epoch": epoch, "seconds": time.perf_counter() - start,
                      "train_loss": float(nn.functional.cross_entropy(logits, y)),
                      "train_acc": float((logits.argmax(1) == y).float().mean())}
        yield record if epoch % 2 else EpochRecord.from_mapping(record)


def test_compare_collects_runs_table_and_plot(tmp_path: Path) -> None:
    runs = compare_optimizers(train_logistic, list(LRS))
    assert [r.optimizer for r in runs] == list(LRS)
    for run in runs:
        assert [e.epoch for e in run.epochs] == [1, 2, 3, 4, 5] and run.error is None
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
