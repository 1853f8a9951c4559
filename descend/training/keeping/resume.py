"""How a run starts or continues, and proof that a resumed run is still the same run.

``--resume`` takes a run folder or a checkpoint in it. It continues ``last.pt`` with the run's
own config (only `RESUMABLE_OVERRIDES` may change); a run killed during its first epoch has
only ``config.json`` and starts again from the beginning with that config. The data must be
the data the run began with: `data_fingerprint` goes into ``last.pt`` and `check_same_data`
refuses other classes, removed files or another number of images, and accepts added files
only when asked to (``--allow-added-data``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from descend.config import FIXED_LENGTH, TrainConfig
from descend.data.splits import DataSplits
from descend.errors import CheckpointError, ConfigError, DataError
from descend.runtime.checkpoint import REQUIRED, read_checkpoint
from descend.runtime.migrate import upgrade_config

# What a last.pt holds beyond what every checkpoint has: the state training continues from.
RESUME_NEEDS = (*REQUIRED, "epoch", "optimizer", "scheduler", "early_stopping", "history", "rng",
                "horizon", "precision", "data_fingerprint")
# Settings a resumed run may change; everything else must stay as the run began.
RESUMABLE_OVERRIDES = {"epochs", "progress", "device", "data_root", "cache_dir", "early_stop",
                       "tensorboard", "eval_batch_size"}


def read_request(cfg: TrainConfig | None, resume: str | Path | None, overrides: dict[str, Any],
                 complete: Callable[[TrainConfig], TrainConfig] | None = None
                 ) -> tuple[TrainConfig, dict[str, Any] | None, bool]:
    """(config, ``last.pt`` state or None, restart): restart is a resumed run that never
    finished an epoch, begun again in its folder with its config. A new run's config is
    ``complete``d before it is checked (the photo default may name the weights that
    ``--freeze-epochs`` or ``--backbone-lr-scale`` need)."""
    if resume is None:
        cfg = cfg or TrainConfig()
        cfg = absolute_paths(cfg.updated(**overrides) if overrides else cfg)
        return (complete(cfg) if complete else cfg).validate(), None, False
    run_dir = run_folder_of(resume)
    blocked = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if blocked:
        raise ConfigError(
            f"--resume continues a run as it was configured; cannot change "
            f"{', '.join(blocked)} (only {', '.join(sorted(RESUMABLE_OVERRIDES))})"
        )
    if not (run_dir / "last.pt").is_file():
        saved = _read_config_json(run_dir)
        cfg = TrainConfig.from_dict({**saved, **overrides, "out": str(run_dir)}, "config.json")
        return cfg.validate(), None, True
    state = read_checkpoint(run_dir / "last.pt", needs=RESUME_NEEDS)
    planned, schedule = state["config"]["epochs"], state["config"]["schedule"]
    if overrides.get("epochs", planned) != planned and schedule in FIXED_LENGTH:
        raise ConfigError(
            f"the {schedule} schedule of {run_dir} was planned for {planned} epochs and cannot "
            "be stretched; resume without --epochs, or start a new run (a constant, step, "
            "multistep, exponential or plateau run can be extended)"
        )
    cfg = TrainConfig.from_dict({**state["config"], **overrides, "out": str(run_dir)})
    return absolute_paths(cfg).validate(), state, False


def run_folder_of(resume: str | Path) -> Path:
    """The run folder ``--resume`` names: the folder itself, or the folder of a checkpoint."""
    path = Path(resume)
    if path.is_file() and path.suffix == ".pt":
        return path.parent
    if not path.is_dir():
        raise CheckpointError(f"cannot resume {path}: no such run folder (give the --out folder "
                              "of a `descend train` run, or its last.pt)")
    return path


def _read_config_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"cannot resume {run_dir}: it has neither last.pt nor config.json (is it a run "
            "folder made by `descend train --out`?)"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot resume {run_dir}: {path} is unreadable ({e})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"cannot resume {run_dir}: {path} holds no settings")
    return upgrade_config(values)


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Relative folders made absolute, so a resume from another directory reads the same data."""
    changes: dict[str, Any] = {}
    if cfg.data and cfg.data.startswith("imagefolder:"):
        folder = cfg.data.split(":", 1)[1]
        if not Path(folder).is_absolute():
            changes["data"] = f"imagefolder:{Path(folder).resolve()}"
    for name in ("data_root", "cache_dir"):
        value = getattr(cfg, name)
        if value and not Path(value).is_absolute():
            changes[name] = str(Path(value).resolve())
    return cfg.updated(**changes) if changes else cfg


def data_fingerprint(data: DataSplits) -> dict[str, Any]:
    """What identifies the data of a run: class names, image counts, and the files of a
    folder (train, validation and test together, since a held-out split moves with them)."""
    splits = {"train": data.train, "val": data.val, "test": data.test}
    files = sorted({p for s in splits.values() if s is not None
                    for p in (getattr(s, "paths", None) or [])})
    return {"classes": list(data.classes),
            "counts": {k: len(s) for k, s in splits.items() if s is not None},
            "files": files or None}


def check_same_data(old: dict[str, Any], new: dict[str, Any], allow_added: bool
                    ) -> str | None:
    """Refuse data (fingerprint ``new``) that is not the run's (``old``); a note when added
    files are accepted. A part of ``old`` that is None was not recorded: the files of data that
    is not a folder; all three for a run that recorded nothing (`descend.runtime.migrate`)."""
    if all(part is None for part in old.values()):
        return "note: this run's checkpoint has no data fingerprint; the data is not checked"
    if new["classes"] != old["classes"]:
        raise DataError(f"the data has classes {new['classes']} but the run was trained on "
                        f"{old['classes']}: resume with the same data, or start a new run")
    if old["files"] is not None and new["files"] is not None:
        before, now = set(old["files"]), set(new["files"])
        removed, added = sorted(before - now), sorted(now - before)
        if removed:
            raise DataError(f"{len(removed)} file(s) of the run's data are gone (e.g. "
                            f"{removed[0]}): restore them, or start a new run")
        if added and not allow_added:
            raise DataError(f"{len(added)} file(s) were added to the data since the run began "
                            f"(e.g. {added[0]}); the validation split would change under the "
                            "run. Pass --allow-added-data to continue with them, or start a "
                            "new run")
        return f"note: continuing with {len(added)} added file(s)" if added else None
    if new["counts"] != old["counts"]:
        raise DataError(f"the data has {new['counts']} images but the run had {old['counts']}: "
                        "resume with the same data, or start a new run")
    return None
