"""The monitored metric: its best value so far, and whether an epoch improved it.

Computed once per epoch by the loop; `best.pt`, early stopping and the epoch line all read it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


def better(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Is ``value`` an improvement on ``best`` by more than ``min_delta``? (acc up, loss down)"""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    if metric.endswith("acc"):
        return value > best + min_delta
    return value < best - min_delta


@dataclass
class BestMetric:
    """``monitor``'s best value and its epoch (1-based; 0 before any)."""

    monitor: str = "val_acc"
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; True when it improved on the best."""
        if better(self.monitor, value, self.best, self.min_delta):
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            setattr(self, f.name, state[f.name])
