"""The learning-rate range test's sweep (Smith, "Cyclical Learning Rates", 2017), as fastai's
``lr_find`` and Lightning's ``Tuner.lr_find`` run it.

A copy of the run's model (built exactly as ``descend train`` would build it: the same data,
augmentation, normalization, initialisation, optimizer and precision) trains for a few hundred
steps while the learning rate grows exponentially, ``lr_i = start (end / start)^(i / (n - 1))``.
The loss is smoothed by a bias-corrected exponential average,

    m_i = beta m_(i-1) + (1 - beta) loss_i,     smooth_i = m_i / (1 - beta^(i+1)),

and the test stops once ``smooth_i`` passes `DIVERGE` times its minimum: the rate diverges.

The suggestion is the rate of the smoothed loss's minimum divided by 10 (fastai's
``lr_min``): a tenth of the rate past which the loss stops falling, the peak a one-cycle
schedule (descend's default) can take. The rate of steepest descent (Lightning's rule: where
the smoothed loss falls fastest per decade of learning rate, d smooth / d log10(lr) at its most
negative, between the first `SKIP` steps and the minimum) is reported beside it. Measured with
`--lr auto` on the sample (BENCHMARKS.md B14), steepest descent chose rates 7x to 460x below
the recipes' for three of four models and lost 4 to 19 points; it often lands on the early,
noisy stretch of the curve, where the loss falls because the network leaves its
initialisation, not because the rate is good. The minimum / 10 came within 1.6x of the
recipes' peaks for fastres, cnn and mlp.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from descend.runtime.precision import autocast

STEPS = 200
START, END = 1e-6, 10.0
BETA = 0.98  # the smoothing of fastai and Lightning
DIVERGE = 4.0
SKIP = 10  # first steps left out of the suggestion: the average is still settling


@dataclass
class LRFinding:
    """One sweep: the rates, the raw and smoothed losses, and what they suggest."""

    optimizer: str
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    diverged_at: float | None = None  # the rate at which the loss passed DIVERGE x its minimum
    suggestion: float | None = None  # the minimum's rate / 10: what --lr auto trains at
    steepest: float | None = None  # steepest descent, reported beside it

    def to_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "suggestion": self.suggestion,
                "rule": "the rate of the smoothed loss's minimum / 10",
                "steepest": self.steepest, "diverged_at": self.diverged_at,
                "steps": len(self.lrs), "lrs": self.lrs, "losses": self.losses,
                "smoothed": self.smoothed}


@dataclass
class SmoothedLoss:
    """smooth_i of the module docstring, one loss at a time: the bias-corrected exponential
    average (``descend optim compare`` smooths its training curves with it too)."""

    beta: float = BETA
    average: float = 0.0
    count: int = 0

    def add(self, loss: float) -> float:
        """Fold in the next loss; the smoothed loss so far."""
        self.average = self.beta * self.average + (1 - self.beta) * loss
        self.count += 1
        return self.average / (1 - self.beta ** self.count)


def smooth(losses: Iterable[float], beta: float = BETA) -> list[float]:
    """``losses`` smoothed as a sweep smooths them (`SmoothedLoss`)."""
    average = SmoothedLoss(beta)
    return [average.add(loss) for loss in losses]


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(minimum rate / 10, steepest-descent rate) of a sweep; None where it is too short."""
    if len(smoothed) < SKIP + 3:
        return None, None
    lowest = int(np.argmin(smoothed))
    minimum = lrs[lowest] / 10
    part = slice(SKIP, max(lowest, SKIP + 2) + 1)
    x, y = np.log10(np.asarray(lrs[part])), np.asarray(smoothed[part])
    slope = np.gradient(y, x)
    return float(minimum), float(lrs[part][int(np.argmin(slope))])


def sweep(run: Any, finding: LRFinding, steps: int, start: float, end: float,
          progress: bool = False) -> None:
    """Train ``run``'s model for ``steps`` steps at exponentially growing rates, recording
    the losses, until the smoothed loss diverges; ``progress``: a bar on a terminal's stderr.
    The rate swept is the first parameter group's; the others keep their ratio to it
    (``--backbone-lr-scale``, ``--partner-lr-scale``)."""
    model, optimizer, cfg = run.step_model, run.optimizer, run.cfg
    ratios = [g["lr"] / optimizer.param_groups[0]["lr"] for g in optimizer.param_groups]
    model.train()
    average, best = SmoothedLoss(), math.inf
    bar = tqdm(total=steps, desc=f"lr-find {finding.optimizer}", unit="step", leave=False,
               disable=not (progress and sys.stderr.isatty()))  # no frames into a file
    for i, (x, y) in enumerate(itertools.islice(batches(run), steps)):
        bar.update(1)
        lr = start * (end / start) ** (i / (steps - 1))
        for group, ratio in zip(optimizer.param_groups, ratios):
            group["lr"] = lr * ratio
        with autocast(run.device, run.amp):
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing or 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        smoothed = average.add(value)
        finding.lrs.append(lr)
        finding.losses.append(value)
        finding.smoothed.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or (i >= SKIP and smoothed > DIVERGE * best):
            finding.diverged_at = lr
            break
    bar.close()


def batches(run: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The run's training batches, epoch after epoch."""
    for epoch in itertools.count():
        run.train_batches.set_epoch(epoch)
        yield from run.train_batches
