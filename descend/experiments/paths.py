"""SPEC §2, seeing the optimizers: their paths on 2-D test functions, over the contours.

Every registered optimizer (`descend.optim.OPTIMIZERS`) starts from the same point of each
function and takes the same number of steps, with a learning rate chosen per function and
optimizer: adaptive methods take steps of about eta whatever the gradient's scale, plain
gradient steps scale with the gradient, so one shared lr would show one of them as broken
rather than as different. Each optimizer class carries its own rates (``path_lrs``, see
`descend.optim.base.DescendOptimizer`), so a new optimizer is one file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from descend.errors import ConfigError
from descend.optim import OPTIMIZERS

__all__ = [
    "FUNCTIONS",
    "learning_rates",
    "PathResult",
    "TestFunction",
    "format_paths_table",
    "plot_paths",
    "run_paths",
]

@dataclass(frozen=True)
class TestFunction:
    """f(x, y) with its minimum (None where there is none), a start and a plot window."""

    __test__ = False  # not a pytest test class, despite the name

    name: str
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float] | None
    window: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max
    log_levels: bool  # contour on a log scale (steep valleys) or a linear one


def _rosenbrock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _beale(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _saddle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x**2 - y**2


def _quadratic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Condition number 50: gradient descent zig-zags across the narrow y direction while
    # crawling along x; momentum and the adaptive methods are meant to fix exactly that.
    return 0.5 * (x**2 + 50 * y**2)


FUNCTIONS: dict[str, TestFunction] = {
    "rosenbrock": TestFunction("rosenbrock", _rosenbrock, (-1.5, 2.0), (1.0, 1.0),
                               (-2.0, 2.0, -1.0, 3.0), True),
    "beale": TestFunction("beale", _beale, (1.0, 1.4), (3.0, 0.5), (-0.5, 4.0, -1.5, 2.0), True),
    # Start just off the ridge y = 0: plain gradient steps escape the saddle slowly.
    "saddle": TestFunction("saddle", _saddle, (-1.0, 1e-3), None, (-1.5, 1.5, -1.5, 1.5), False),
    "quadratic": TestFunction("quadratic", _quadratic, (-4.0, 1.0), (0.0, 0.0),
                              (-4.5, 1.0, -1.5, 1.5), True),
}



def learning_rates() -> dict[str, dict[str, float]]:
    """function -> optimizer -> lr: each registered optimizer's own `path_lrs`."""
    own = {name: getattr(OPTIMIZERS.get(name), "path_lrs", {}) for name in OPTIMIZERS}
    return {f: {name: rates[f] for name, rates in own.items() if f in rates} for f in FUNCTIONS}


DEFAULT_STEPS = 500
ESCAPE_FACTOR = 10.0  # a path that leaves the window by this many widths has diverged


@dataclass
class PathResult:
    function: str
    optimizer: str
    lr: float
    path: np.ndarray  # (steps + 1, 2): the start, then the point after each step
    values: np.ndarray  # f along the path
    diverged: bool  # left the window far behind (or went non-finite) and was stopped

    @property
    def final_point(self) -> tuple[float, float]:
        return float(self.path[-1, 0]), float(self.path[-1, 1])

    @property
    def final_value(self) -> float:
        return float(self.values[-1])

    def distance_to_minimum(self) -> float | None:
        minimum = FUNCTIONS[self.function].minimum
        if minimum is None:
            return None
        return float(np.hypot(self.path[-1, 0] - minimum[0], self.path[-1, 1] - minimum[1]))

    def to_dict(self) -> dict[str, object]:
        """Where the path ended, as JSON values (``descend optim paths --json``)."""
        return {"function": self.function, "optimizer": self.optimizer, "lr": self.lr,
                "steps": len(self.path) - 1, "final_point": list(self.final_point),
                "final_value": self.final_value, "distance_to_minimum":
                self.distance_to_minimum(), "diverged": self.diverged}


def run_paths(
    optimizers: list[str] | None = None,
    functions: list[str] | None = None,
    steps: int = DEFAULT_STEPS,
    lrs: dict[str, dict[str, float]] | None = None,
) -> list[PathResult]:
    """Run every optimizer (default: every registered one) on every function from that
    function's start point.

    ``lrs`` overrides entries of `learning_rates()` (function -> optimizer -> lr). Unknown names,
    and an optimizer without a learning rate for a function, raise `ConfigError` (a
    ValueError) before anything runs.
    """
    optimizers = list(OPTIMIZERS) if optimizers is None else optimizers
    functions = list(FUNCTIONS) if functions is None else functions
    for name in optimizers:
        OPTIMIZERS.get(name)  # unknown names fail here, listing the known ones
    for name in functions:
        if name not in FUNCTIONS:
            raise ConfigError(f"unknown function {name!r}; choose from {', '.join(FUNCTIONS)}")
    rates = learning_rates()
    chosen = {f: {**rates[f], **(lrs or {}).get(f, {})} for f in functions}
    missing = [f"{o} on {f}" for f in functions for o in optimizers if o not in chosen[f]]
    if missing:
        raise ConfigError(f"no learning rate for {', '.join(missing)}: give the optimizer's "
                          "class a path_lrs entry for each function (or pass lrs)")
    return [_run_one(FUNCTIONS[f], o, chosen[f][o], steps) for f in functions for o in optimizers]


def _run_one(fn: TestFunction, optimizer: str, lr: float, steps: int) -> PathResult:
    # float64: the paths are the subject here, and float32 rounding would blur them near
    # the minimum. The point is a 1 x 2 matrix: Muon takes matrices only (its step is then
    # g / |g|, normalised), and the element-wise optimizers do not see the difference.
    point = torch.tensor([fn.start], dtype=torch.float64, requires_grad=True)
    opt = OPTIMIZERS.get(optimizer)([point], lr=lr)  # type: ignore[call-arg]  # own defaults
    x0, x1, y0, y1 = fn.window
    span = max(x1 - x0, y1 - y0)
    path = [point.detach()[0].clone()]
    values = [float(fn.f(*point.detach()[0]))]
    diverged = False
    for _ in range(steps):
        opt.zero_grad()
        value = fn.f(point[0, 0], point[0, 1])
        value.backward()
        opt.step()
        p = point.detach()[0].clone()
        far = (p[0] < x0 - ESCAPE_FACTOR * span or p[0] > x1 + ESCAPE_FACTOR * span
               or p[1] < y0 - ESCAPE_FACTOR * span or p[1] > y1 + ESCAPE_FACTOR * span)
        if not torch.isfinite(p).all() or far:
            diverged = True
            break
        path.append(p)
        values.append(float(fn.f(p[0], p[1])))
    return PathResult(fn.name, optimizer, lr, torch.stack(path).numpy(), np.array(values),
                      diverged)


def format_paths_table(results: list[PathResult]) -> str:
    """Where each optimizer ended on each function, f there, and the distance to the minimum."""
    header = (f"{'function':<11} {'optimizer':<9} {'lr':>7} {'final (x, y)':>22} "
              f"{'final f':>11} {'to minimum':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        x, y = r.final_point
        distance = r.distance_to_minimum()
        dist = "-" if distance is None else f"{distance:.4f}"
        note = "  (diverged, stopped)" if r.diverged else ""
        lines.append(f"{r.function:<11} {r.optimizer:<9} {r.lr:>7g} "
                     f"{f'({x:.4f}, {y:.4f})':>22} {r.final_value:>11.4g} {dist:>10}{note}")
    return "\n".join(lines)


def plot_paths(results: list[PathResult], path: str | Path) -> Path:
    """PNG: one subplot per function, its contours, and every optimizer's path."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    from descend.reports.plots import save_figure

    names = list(dict.fromkeys(r.function for r in results))
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(6.5 * cols, 5.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    optimizers = list(dict.fromkeys(r.optimizer for r in results))
    colors = {name: f"C{i}" for i, name in enumerate(optimizers)}
    for ax, fname in zip(axes, names):
        fn = FUNCTIONS[fname]
        x0, x1, y0, y1 = fn.window
        gx, gy = torch.meshgrid(torch.linspace(x0, x1, 300, dtype=torch.float64),
                                torch.linspace(y0, y1, 300, dtype=torch.float64), indexing="xy")
        z = fn.f(gx, gy).numpy()
        if fn.log_levels:
            low = max(float(z.min()), 1e-3)
            levels = np.logspace(math.log10(low), math.log10(float(z.max())), 25)
            ax.contour(gx.numpy(), gy.numpy(), z, levels=levels, cmap="viridis",
                       linewidths=0.7, alpha=0.8)
        else:
            ax.contour(gx.numpy(), gy.numpy(), z, levels=25, cmap="viridis", linewidths=0.7,
                       alpha=0.8)
        for r in (r for r in results if r.function == fname):
            ax.plot(r.path[:, 0], r.path[:, 1], "-", color=colors[r.optimizer], lw=1.4,
                    label=f"{r.optimizer} (lr {r.lr:g})" + (", diverged" if r.diverged else ""))
            ax.plot(*r.path[-1], "o", color=colors[r.optimizer], ms=4)
        ax.plot(*fn.start, "ks", ms=6, label="start")
        if fn.minimum is not None:
            ax.plot(*fn.minimum, "r*", ms=13, label="minimum")
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=fname, xlabel="x", ylabel="y")
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    path = Path(path)
    save_figure(fig, path)  # makes the folder; a half-written PNG is never left behind
    return path
