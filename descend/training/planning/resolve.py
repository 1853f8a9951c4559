"""The first of a run's four steps: the request resolved into settings, before any data is
read or any step timed.

`resolve` goes top to bottom once: the flags and file (or, with ``--resume``, the run's own
config and ``last.pt``, `descend.training.keeping.resume`), the photo default
(`descend.training.planning.photos`), the starting weights (``--init``/``--pretrained``/
``--weights``, which may fill the model, size and normalization), the dataset when none is
named (CIFAR-10, else the built-in sample: decided here so that the run folder is named after
it), and the run folder. The result is a frozen `Request`; what the data and the probes
decide next is the plan's (`descend.training.planning.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.config import TrainConfig
from descend.data.datasets import default_dataset
from descend.training.keeping.resume import read_request
from descend.training.keeping.run_folder import default_run_dir
from descend.training.planning.initialize import StartingWeights, starting_weights
from descend.training.planning.photos import photo_default


@dataclass(frozen=True)
class Request:
    """A run's request, resolved: every setting the user, a file, a resumed run, the photo
    default and the starting weights give (``cfg``, its ``out`` the run folder)."""

    cfg: TrainConfig
    state: dict[str, Any] | None  # a resumed run's last.pt
    restart: bool  # a resumed run stopped in its first epoch, begun again with its config
    start: StartingWeights | None  # a new run's starting weights
    notes: tuple[str, ...] = ()  # lines for the run's log (the photo default's choice)

    @property
    def folder(self) -> Path:
        assert self.cfg.out is not None
        return Path(self.cfg.out)

    @property
    def new(self) -> bool:
        return self.state is None


def resolve(cfg: TrainConfig | None, resume: str | Path | None, overrides: dict[str, Any],
            data_given: bool = False) -> Request:
    """The request of ``descend train`` (a `TrainConfig` and/or keyword ``overrides``, or
    ``resume``), resolved; ``data_given`` where the caller brings its own data (the audit's
    folds): no photo default, no default dataset."""
    notes: list[str] = []

    def photos(new: TrainConfig) -> TrainConfig:  # a folder of photos starts from ImageNet
        new, note = photo_default(new)
        notes.extend([note] if note else [])
        return new

    cfg, state, restart = read_request(cfg, resume, overrides,
                                       None if data_given else photos)
    start = None
    if state is None and cfg.data is None and not data_given:
        cfg, said = with_default_data(cfg)
        notes += said
    if state is None:  # the weights to start from may fill the model, size and normalization
        start = starting_weights(cfg)
        cfg = start.complete(cfg) if start else cfg
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    return Request(cfg.updated(out=str(out)), state, restart, start, tuple(notes))


def with_default_data(cfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """No ``--data``: CIFAR-10, or the built-in sample where CIFAR-10 is neither there nor
    downloadable (`descend.data.datasets.default_dataset`), with the notes that say so."""
    name, why = default_dataset(cfg.data_root, cfg.download)
    notes = [] if why is None else [
        f"note: no dataset named and CIFAR-10 is not available ({why})",
        "note: training on the built-in cifar10-sample (3,000 train / 800 test images) instead; "
        "name a dataset with --data to train on real data"]
    return cfg.updated(data=name), notes
