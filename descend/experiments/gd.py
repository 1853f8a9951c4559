"""SPEC §1, the seed's first experiment: batch, stochastic and mini-batch gradient descent.

The same data, the same initial nn.Linear(10, 1), MSELoss and plain SGD with lr 0.01 for 20
shuffled epochs; only the batch size differs. BGD (the whole set per batch) makes one update per
epoch, SGD (batch 1) one per sample, MBGD(32) one per batch of 32: with 1000 samples that is
20, 20,000 and 640 updates. The seed draws y at random, so that nothing can be learnt; here
y = X w* + b* + noise by default, so that the weights found can be compared with the truth
(``random_targets=True`` keeps the seed's variant; w* is then the least-squares fit, the best
any linear model can do on that data).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from descend.optim.sgd import SGD

__all__ = ["GDResult", "format_gd_table", "make_gd_data", "plot_gd", "run_gd_modes"]

# The seed's modes; None means "the whole training set".
SEED_BATCH_SIZES: dict[str, int | None] = {"BGD": None, "SGD": 1, "MBGD": 32}
NOISE_STD = 0.1  # small: the optimum is close to the truth, so ||w - w*|| measures the optimizer
HISTORY_POINTS = 200  # full-data losses recorded per mode; enough for a smooth curve


@dataclass
class GDResult:
    """One mode's run. ``history_*`` are parallel lists: after ``history_updates[i]`` updates
    and ``history_seconds[i]`` seconds of training, the loss on the full data was
    ``history_loss[i]`` (index 0 is the start)."""

    mode: str
    batch_size: int
    updates: int
    final_loss: float
    distance_to_w: float
    seconds: float
    weights: np.ndarray
    bias: float
    history_updates: list[int] = field(default_factory=list)
    history_loss: list[float] = field(default_factory=list)
    history_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The result as JSON values (``descend gd --json``)."""
        return {"mode": self.mode, "batch_size": self.batch_size, "updates": self.updates,
                "final_loss": self.final_loss, "distance_to_w": self.distance_to_w,
                "seconds": self.seconds, "weights": [float(w) for w in self.weights],
                "bias": self.bias, "history": {"updates": self.history_updates,
                                               "loss": self.history_loss,
                                               "seconds": self.history_seconds}}


@dataclass
class GDData:
    x: torch.Tensor
    y: torch.Tensor
    w_star: torch.Tensor  # the truth, or the least-squares fit for random targets
    b_star: float
    optimum_loss: float  # the least-squares fit's loss: the floor for any linear model


def make_gd_data(samples: int = 1000, features: int = 10, seed: int = 0,
                 random_targets: bool = False) -> GDData:
    """x ~ N(0, 1); y = x w* + b* + noise (or y ~ N(0, 1) as in the seed)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=gen)
    if random_targets:
        y = torch.randn(samples, 1, generator=gen)
    else:
        w_true = torch.randn(features, 1, generator=gen)
        b_true = torch.randn(1, generator=gen)
        y = x @ w_true + b_true + NOISE_STD * torch.randn(samples, 1, generator=gen)
    # Least squares in float64: the best linear fit, the floor of every mode's loss.
    design = torch.cat([x, torch.ones(samples, 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution
    optimum = float(((design @ solution - y.double()) ** 2).mean())
    if random_targets:
        w_star, b_star = solution[:-1].float(), float(solution[-1])
    else:
        w_star, b_star = w_true, float(b_true)
    return GDData(x, y, w_star, b_star, optimum)


def run_gd_modes(
    samples: int = 1000,
    features: int = 10,
    epochs: int = 20,
    lr: float = 0.01,
    batch_sizes: dict[str, int | None] | None = None,
    seed: int = 0,
    random_targets: bool = False,
) -> list[GDResult]:
    """Train one nn.Linear(features, 1) per mode from identical data and initial weights.

    Each epoch visits every sample once in a shuffled order (the same order for every mode,
    from ``seed``); the last batch of an epoch may be smaller. Wall time counts the updates
    only, not the full-data loss evaluations made for the history.
    """
    batch_sizes = SEED_BATCH_SIZES if batch_sizes is None else batch_sizes
    data = make_gd_data(samples, features, seed, random_targets)
    torch.manual_seed(seed)
    initial = nn.Linear(features, 1)
    results = []
    for mode, size in batch_sizes.items():
        batch = samples if size is None else int(size)
        if batch < 1:
            raise ValueError(f"batch size for {mode} must be >= 1 or None, got {size}")
        results.append(_train_mode(mode, batch, copy.deepcopy(initial), data, epochs, lr, seed))
    return results


def _train_mode(mode: str, batch: int, model: nn.Linear, data: GDData, epochs: int,
                lr: float, seed: int) -> GDResult:
    loss_fn = nn.MSELoss()
    optimizer = SGD(model.parameters(), lr=lr)
    samples = len(data.x)
    per_epoch = math.ceil(samples / batch)
    total = epochs * per_epoch
    record_every = max(1, total // HISTORY_POINTS)
    order_gen = torch.Generator().manual_seed(seed + 1)

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_fn(model(data.x), data.y))

    updates, seconds = 0, 0.0
    hist_u, hist_l, hist_s = [0], [full_loss()], [0.0]
    for _ in range(epochs):
        order = torch.randperm(samples, generator=order_gen)
        for start in range(0, samples, batch):
            idx = order[start:start + batch]
            tic = time.perf_counter()
            loss = loss_fn(model(data.x[idx]), data.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seconds += time.perf_counter() - tic
            updates += 1
            if updates % record_every == 0 or updates == total:
                hist_u.append(updates)
                hist_l.append(full_loss())
                hist_s.append(seconds)
    w = model.weight.detach().reshape(-1)
    b = float(model.bias.detach())
    distance = float(torch.linalg.vector_norm(w - data.w_star.reshape(-1)))
    return GDResult(mode, batch, updates, hist_l[-1], distance, seconds, w.numpy().copy(), b,
                    hist_u, hist_l, hist_s)


def format_gd_table(results: list[GDResult]) -> str:
    """A plain-text table: one row per mode."""
    header = f"{'mode':<6} {'batch':>6} {'updates':>8} {'final loss':>11} {'|w - w*|':>9} " \
             f"{'seconds':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.mode:<6} {r.batch_size:>6} {r.updates:>8} {r.final_loss:>11.5f} "
                     f"{r.distance_to_w:>9.4f} {r.seconds:>8.3f}")
    return "\n".join(lines)


def plot_gd(results: list[GDResult], path: str | Path) -> Path:
    """PNG: full-data loss against updates (log scale) and against seconds of training."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    from descend.reports.plots import save_figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_updates, by_seconds = fig.subplots(1, 2)
    for r in results:
        label = f"{r.mode} (batch {r.batch_size}, {r.updates} updates)"
        # Update 0 cannot sit on a log axis; the curves start at update 1.
        by_updates.plot(np.maximum(r.history_updates, 1), r.history_loss, label=label)
        by_seconds.plot(r.history_seconds, r.history_loss, label=label)
    by_updates.set(xscale="log", yscale="log", xlabel="updates", ylabel="MSE on all samples",
                   title="Loss against updates")
    by_seconds.set(yscale="log", xlabel="seconds of training", ylabel="MSE on all samples",
                   title="Loss against time")
    for ax in (by_updates, by_seconds):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    save_figure(fig, path)
    return Path(path)
