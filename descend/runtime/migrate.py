"""The files an older descend wrote, read as today's: the one place that knows their format.

`read_checkpoint` passes every checkpoint through `upgrade_checkpoint`, and ``--resume`` a run
folder's ``config.json`` through `upgrade_config`, so that eval, predict, export, ``--init`` and
``--resume`` know only today's format. Each step is keyed on what the file holds, not on the
version it names (0.2.0 still spelled the decode geometry inside ``augment``), and leaves a
file already in today's format as it is. What descend 0.1.0 (unless said) wrote, and what it
becomes:

- config ``augment`` with ``resize:R`` / ``center-crop:C`` -> config ``resize``, ``center_crop``;
- no ``geometry`` -> the decode geometry replayed from the config;
- ``data`` the folder it ran on, the config's as typed (relative) -> ``data`` where it is now;
- last.pt ``early_stopping`` with EarlyStopping's fields -> the best metric's (`BestMetric`);
- last.pt ``scheduler`` of cosine / onecycle, torch's LambdaLR / OneCycleLR state ->
  ``{"peaks": [...]}`` (`ProgressSchedule`);
- last.pt without ``horizon`` -> the steps of the epochs done;
- last.pt without ``precision`` -> float32;
- last.pt without ``data_fingerprint`` -> a fingerprint that records nothing;
- last.pt ``time_budget`` without ``val_images`` (0.3.0 and before) -> None: every
  validation image.

A user who types the 0.1 spelling (``--augment resize:R``) is read where settings are parsed
(`TrainConfig`); this module is for files.
"""

from __future__ import annotations

import math
from typing import Any

from descend.data.geometry import Geometry, split_geometry
from descend.data.paths import image_folder

# EarlyStopping's own fields, which 0.1.0 stored with the best metric's: the patience lives in
# the config, and the epochs without improvement are counted from the history.
EARLY_STOPPING_ONLY = ("patience", "bad_epochs")
# The schedules whose state is descend's own today (`ProgressSchedule`) and was torch's in
# 0.1.0: cosine a LambdaLR, onecycle a OneCycleLR (or, under 4 steps, the constant LambdaLR
# that both versions build, whose state needs nothing).
PROGRESS_SCHEDULES = ("cosine", "onecycle")


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's saved settings (a checkpoint's ``config``, a run folder's ``config.json``) in
    today's spelling: 0.1 wrote the decode geometry inside ``augment`` (``resize:R``,
    ``center-crop:C``); it moves to ``resize`` and ``center_crop``. `ConfigError` where the
    two spellings disagree."""
    augment = config.get("augment")
    if not isinstance(augment, str):
        return config
    augment, old = split_geometry(augment)
    if not old:
        return config
    geometry = Geometry(config.get("image_size"), config.get("resize"),
                        config.get("center_crop")).merged(**old)
    return {**config, "augment": augment, "resize": geometry.resize,
            "center_crop": geometry.center_crop}


def upgrade_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """``ckpt`` (as loaded, not yet checked) in today's format; see the module docstring.
    A part that is not the shape a step reads is left for `check_checkpoint` to refuse."""
    ckpt = dict(ckpt)
    config = ckpt.get("config")
    if isinstance(config, dict):
        ckpt["config"] = config = upgrade_config(config)
        _data(ckpt, config)
        _geometry(ckpt, config)
        _scheduler(ckpt, config)
        _horizon(ckpt, config)
    if isinstance(ckpt.get("early_stopping"), dict):
        ckpt["early_stopping"] = {k: v for k, v in ckpt["early_stopping"].items()
                                  if k not in EARLY_STOPPING_ONLY}
    if "optimizer" in ckpt:  # a last.pt
        # 0.1.0 recorded neither: a resumed 0.1.0 run continues in float32, and its data
        # is not checked.
        ckpt.setdefault("precision", {"bf16_autocast": False})
        ckpt.setdefault("data_fingerprint", {"classes": None, "counts": None, "files": None})
    if isinstance(ckpt.get("time_budget"), dict):  # a budgeted run validated on all its images
        ckpt["time_budget"] = {"val_images": None, **ckpt["time_budget"]}
    return ckpt


def _data(ckpt: dict[str, Any], config: dict[str, Any]) -> None:
    """``data`` where eval finds it now. 0.1.0 stored the folder it ran on and kept the
    config's as typed, relative to where the run started: where the stored folder is gone
    (the run was moved with its data, or made elsewhere), the config's name is used."""
    stored, typed = ckpt.get("data"), config.get("data")
    if not isinstance(typed, str) or not typed:
        return
    if stored is None or stored == "":
        ckpt["data"] = typed
        return
    if not isinstance(stored, str):
        return
    if (folder := image_folder(stored)) is None or folder.is_dir():
        return
    if (given := image_folder(typed)) is None or given.is_dir():
        ckpt["data"] = typed


def _geometry(ckpt: dict[str, Any], config: dict[str, Any]) -> None:
    """The decode ``geometry`` predict replays, where 0.1.0 stored none: the config's geometry,
    with the model's side standing in for the dataset's own size that the config lacks. Exact
    unless the run had ``center-crop:N`` without ``resize:R``: its crop was cut from the image
    scaled to the dataset's default size (64 for an image folder)."""
    model = ckpt.get("model")
    if "geometry" in ckpt or not isinstance(model, dict):
        return
    size = model.get("image_size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        return
    geometry = Geometry(config.get("image_size"), config.get("resize"), config.get("center_crop"))
    ckpt["geometry"] = {"size": list(size), "resize": geometry.decode_size(size[0])[1]}


def _scheduler(ckpt: dict[str, Any], config: dict[str, Any]) -> None:
    """cosine and onecycle set the rate from the horizon's progress and keep only their peak
    rates; 0.1.0's torch schedulers kept them as ``base_lrs``, and onecycle's as each group's
    ``max_lr``."""
    state, optimizer = ckpt.get("scheduler"), ckpt.get("optimizer")
    if (config.get("schedule") not in PROGRESS_SCHEDULES or not isinstance(state, dict)
            or "peaks" in state or "base_lrs" not in state or not isinstance(optimizer, dict)
            or ("lr_lambdas" in state and config["schedule"] == "onecycle")):
        return
    groups = optimizer.get("param_groups") or []
    ckpt["scheduler"] = {"peaks": [g.get("max_lr", base)
                                   for g, base in zip(groups, state["base_lrs"])]}


def _horizon(ckpt: dict[str, Any], config: dict[str, Any]) -> None:
    """The ``horizon`` (steps done and planned) of a 0.1.0 last.pt, which kept none: every
    epoch was whole, and its history says how many images an epoch trained (``seconds`` x
    ``images_per_sec``), so how many batches of ``batch_size`` it had."""
    history = ckpt.get("history")
    if "horizon" in ckpt or not (isinstance(history, list) and history
                                 and isinstance(history[-1], dict)):
        return
    row = history[-1]
    try:
        images = round(float(row["seconds"]) * float(row["images_per_sec"]))
        steps = math.ceil(images / int(config["batch_size"]))
        done, planned = int(ckpt["epoch"]) * steps, int(config["epochs"]) * steps
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError):
        return  # not what 0.1.0 wrote: --resume refuses a last.pt without a horizon
    ckpt["horizon"] = {"total": max(planned, done), "step": done, "anchor_step": 0,
                       "anchor_progress": 0.0}
