"""The first of a run's four steps: the request resolved into settings, before any data is
read or any step timed.

`resolve` goes top to bottom once: the flags and file (or, with ``--resume``, the run's own
config and ``last.pt``, `descend.training.keeping.resume`), the photo default
(`descend.training.planning.photos`), the starting weights (``--init``/``--pretrained``/
``--weights``, which may fill the model, size and normalization), and the run folder. The
result is a frozen `Request`; what the data and the probes decide next is the plan's
(`descend.training.planning.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.config import TrainConfig
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
            photo_default_applies: bool = True) -> Request:
    """The request of ``descend train`` (a `TrainConfig` and/or keyword ``overrides``, or
    ``resume``), resolved; ``photo_default_applies`` False where the caller brings its own data
    (the audit's folds)."""
    cfg, state, restart = read_request(cfg, resume, overrides)
    notes: list[str] = []
    start = None
    if state is None and photo_default_applies:  # a folder of photos starts from ImageNet
        cfg, note = photo_default(cfg)
        notes += [note] if note else []
    if state is None:  # the weights to start from may fill the model, size and normalization
        start = starting_weights(cfg)
        cfg = start.complete(cfg) if start else cfg
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    return Request(cfg.updated(out=str(out)), state, restart, start, tuple(notes))
