"""The run folder: where a run's checkpoints, metrics, plots and log live."""

from __future__ import annotations

import re
import time
from pathlib import Path

from descend.config import TrainConfig
from descend.errors import ConfigError

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "train.log",
             "skipped.json")


def default_run_dir(cfg: TrainConfig) -> Path:
    data = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path((cfg.data or "cifar10").replace(":", "-")).name)
    model = (cfg.model or "cnn").replace(":", "-")
    return Path("runs") / f"{data}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    existing = [n for n in RUN_FILES if (path / n).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{path} already holds a run ({', '.join(existing)}): continue it with "
            f"--resume {path}, choose another --out, or pass --overwrite to replace it"
        )
    for n in existing:
        (path / n).unlink()
    path.mkdir(parents=True, exist_ok=True)
