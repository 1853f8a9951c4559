"""``descend lr-find``: the learning-rate range test on a model built exactly as ``descend
train`` would build it (`descend.training.trainer.setup`), in a temporary run folder; the sweep
and its suggestion are `descend.training.planning.lr_sweep`'s."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from descend.config import TrainConfig
from descend.data.splits import DataSplits
from descend.errors import ConfigError
from descend.runtime.device import cpu_threads
from descend.training.keeping.run_folder import RunFolder
from descend.training.planning.initialize import starting_weights
from descend.training.planning.lr_sweep import END, SKIP, START, STEPS, LRFinding, suggest, sweep
from descend.training.planning.resolve import Request, with_default_data
from descend.training.trainer import setup


def lr_find(cfg: TrainConfig, *, steps: int = STEPS, start: float = START, end: float = END,
            splits: DataSplits | None = None,
            log: Callable[[str], None] = print) -> LRFinding:
    """Sweep ``cfg``'s model and optimizer from ``start`` to ``end`` over ``steps`` steps (see
    the module docstring); the run's folder is a temporary one, nothing is kept."""
    if not 0 < start < end or not math.isfinite(end):
        raise ConfigError(f"lr-find needs 0 < start < end, got {start:g} and {end:g}")
    if steps < SKIP + 3:
        raise ConfigError(f"lr-find needs at least {SKIP + 3} steps, got {steps}")
    finding = LRFinding(cfg.optimizer)
    with tempfile.TemporaryDirectory() as tmp, cpu_threads(None):
        folder = RunFolder.open(Path(tmp) / "run", new=True)
        try:
            sweep_cfg = cfg.updated(out=str(folder.path), epochs=1, time_budget=None,
                                    val_every=0, progress=False, lr=start, schedule="constant",
                                    ema_decay=0.0)
            notes: list[str] = []
            if sweep_cfg.data is None and splits is None:  # CIFAR-10, else the sample
                sweep_cfg, notes = with_default_data(sweep_cfg)
            start_weights = starting_weights(sweep_cfg)
            if start_weights:
                sweep_cfg = start_weights.complete(sweep_cfg)
            run = setup(Request(sweep_cfg, None, False, start_weights, tuple(notes)), folder,
                        [], given=splits)
            sweep(run, finding, steps, start, end, progress=cfg.progress)
        finally:
            folder.close()
    finding.suggestion, finding.steepest = suggest(finding.lrs, finding.smoothed)
    told = (f"suggests {finding.suggestion:.3g} (the minimum's rate / 10; steepest descent "
            f"is at {finding.steepest:.3g})" if finding.suggestion else
            "suggests nothing: the sweep was too short")
    log(f"lr-find {cfg.optimizer}: {len(finding.lrs)} steps from {start:g}"
        + (f", diverged at {finding.diverged_at:.3g}" if finding.diverged_at else "")
        + f"; {told}")
    return finding
