"""Self-describing checkpoints, written atomically and loaded without running code.

A checkpoint is a plain dict of tensors, numbers, strings and lists: the model's name and
arguments, class names, input size and channels, normalization, the training config, metrics
and library versions, so that ``eval`` and ``predict`` need nothing else. ``last.pt`` adds the
optimizer, scheduler, early-stopping and RNG state that ``--resume`` continues from.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot execute code. Nor can it
make descend allocate what it likes: `check_checkpoint` checks every part a reader uses, and
that the weights fit the model described (built on the ``meta`` device, which allocates
nothing), before any model is built or any image decoded.
"""

from __future__ import annotations

import math
import os
import platform
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.errors import CheckpointError, DescendError
from descend.io import atomic_torch_save
from descend.models import ModelSpec, create_model
from descend.runtime.migrate import upgrade_checkpoint
from descend.version import __version__

FORMAT = "descend-checkpoint"
FORMAT_VERSION = 1
# What every reader needs, and every checkpoint `descend train` writes has: eval and predict build
# the model, --init takes its weights, size and normalization, --resume its config.
REQUIRED = ("model", "state_dict", "classes", "normalization", "config")
# Limits on what a model description may ask for. They refuse the absurd, not the merely big:
# the largest inputs of common classifiers are 518-600 pixels, and a decoded 4096 x 4096 RGB image
# is already 48 MB; ImageNet-21k, the largest common label set, has 21,841 classes, and a head of
# 100,000 classes on 2,048 features is 800 MB. Channels: grey, grey + alpha, RGB, RGBA.
MAX_IMAGE_SIDE = 4096
MAX_CLASSES = 100_000
MAX_CHANNELS = 4
FROM_TRAIN = "use a best.pt or last.pt written by `descend train`"


def versions() -> dict[str, str]:
    import torchvision

    return {"descend": __version__, "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "python": platform.python_version()}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(),
               **payload}
    atomic_torch_save(path, payload)


def read_checkpoint(path: str | os.PathLike[str],
                    needs: Iterable[str] = REQUIRED) -> dict[str, Any]:
    """The checkpoint at ``path`` (or a run folder's best.pt, else last.pt), in today's format
    (`upgrade_checkpoint` reads what an older descend wrote), checked by `check_checkpoint` to
    hold ``needs`` and to describe a model its weights fit."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(
            f"{path} is not a readable checkpoint (not a PyTorch archive): it may be truncated "
            "or not a checkpoint at all; use the run's best.pt or last.pt"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({str(e).splitlines()[0][:120]}): it may be "
            "truncated or not a checkpoint at all; use the run's best.pt or last.pt"
        ) from None
    except Exception as e:  # weights_only refuses pickled code: say so instead of a traceback
        raise CheckpointError(
            f"{path} cannot be loaded safely ({type(e).__name__}: {str(e)[:120]}); descend "
            "only loads checkpoints it wrote"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a descend checkpoint (no model description); "
            "use a best.pt or last.pt written by `descend train`"
        )
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer descend; upgrade descend to read it")
    ckpt = upgrade_checkpoint(ckpt)
    check_checkpoint(ckpt, path, needs)
    return ckpt


def check_checkpoint(ckpt: dict[str, Any], path: str | Path,
                     needs: Iterable[str] = REQUIRED) -> None:
    """Raise a one-line `CheckpointError` unless every part of ``ckpt`` that a reader uses is
    present (those in ``needs``) and sane, and the weights fit the model it describes.

    Runs before anything is built from the checkpoint: the model is built on the ``meta``
    device to compare shapes, so a description asking for a 100000 x 100000 input or a
    billion classes is refused without allocating it.
    """
    bad = f"the checkpoint is damaged or was not written by descend; {FROM_TRAIN}"
    for key in needs:
        if key not in ckpt:
            raise CheckpointError(f"{path} has no {key!r} (every checkpoint descend writes has "
                                  f"{', '.join(REQUIRED)}): {bad}")
    spec = _check_spec(ckpt["model"], path, bad) if "model" in ckpt else None
    if "classes" in ckpt:
        classes = ckpt["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise CheckpointError(f"{path}: 'classes' must be a list of class names, got "
                                  f"{_show(classes)}: {bad}")
        if spec is not None and len(classes) != spec.num_classes:
            raise CheckpointError(f"{path} names {len(classes)} classes but its model predicts "
                                  f"{spec.num_classes}: {bad}")
    if "normalization" in ckpt:
        _check_normalization(ckpt["normalization"], spec, path, bad)
    if "geometry" in ckpt:
        _check_geometry(ckpt["geometry"], spec, path, bad)
    if "state_dict" in ckpt:
        state = ckpt["state_dict"]
        if not isinstance(state, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors: "
                                  f"{bad}")
        if spec is not None:
            _check_weights_fit(spec, state, path)
    if "config" in ckpt:
        _check_config(ckpt["config"], spec, path, bad)
    for key in ("data", "data_root"):  # where eval finds the run's dataset
        if ckpt.get(key) is not None and not isinstance(ckpt[key], str):
            raise CheckpointError(f"{path}: {key!r} is {_show(ckpt[key])}, not a dataset name "
                                  f"or folder: {bad}")


def _show(value: object) -> str:
    """A bad value for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: object, what: str, low: int, high: int, path: str | Path, bad: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"{path}: {what} is {_show(value)}, not a whole number from {low} "
                              f"to {high:,}: {bad}")
    return value


def _check_spec(model: object, path: str | Path, bad: str) -> ModelSpec:
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: 'model' is {_show(model)}, not a model description: "
                              f"{bad}")
    for key in ("name", "num_classes", "in_channels", "image_size"):
        if key not in model:
            raise CheckpointError(f"{path}: the model description has no {key!r}: {bad}")
    name, kwargs, size = model["name"], model.get("kwargs", {}), model["image_size"]
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{path}: the model name is {_show(name)}: {bad}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{path}: the model arguments are {_show(kwargs)}, not a mapping "
                              f"of names to values: {bad}")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise CheckpointError(f"{path}: the model's image_size is {_show(size)}, not [height, "
                              f"width]: {bad}")
    return ModelSpec(
        name,
        _whole(model["num_classes"], "the model's num_classes", 1, MAX_CLASSES, path, bad),
        _whole(model["in_channels"], "the model's in_channels", 1, MAX_CHANNELS, path, bad),
        (_whole(size[0], "the model's image height", 1, MAX_IMAGE_SIDE, path, bad),
         _whole(size[1], "the model's image width", 1, MAX_IMAGE_SIDE, path, bad)),
        dict(kwargs))


def _check_normalization(norm: object, spec: ModelSpec | None, path: str | Path,
                         bad: str) -> None:
    if not isinstance(norm, dict) or "mean" not in norm or "std" not in norm:
        raise CheckpointError(f"{path}: 'normalization' is {_show(norm)}, not a mean and std: "
                              f"{bad}")
    for key in ("mean", "std"):
        values = norm[key]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values):
            raise CheckpointError(f"{path}: the normalization {key} is {_show(values)}, not a "
                                  f"list of numbers: {bad}")
        if spec is not None and len(values) != spec.in_channels:
            raise CheckpointError(f"{path}: the normalization {key} has {len(values)} values "
                                  f"but the model takes {spec.in_channels}-channel images: "
                                  f"{bad}")
    if any(s <= 0 for s in norm["std"]):
        raise CheckpointError(f"{path}: the normalization std {_show(norm['std'])} has a value "
                              f"that is not positive: {bad}")


def _check_geometry(geometry: object, spec: ModelSpec | None, path: str | Path,
                    bad: str) -> None:
    """The decode step predict replays: a shorter side ``resize`` no smaller than the crop."""
    if not isinstance(geometry, dict):
        raise CheckpointError(f"{path}: 'geometry' is {_show(geometry)}, not a decode "
                              f"geometry: {bad}")
    resize = geometry.get("resize")
    if resize is not None:
        low = max(spec.image_size) if spec is not None else 1
        _whole(resize, "the decode geometry's resize", low, MAX_IMAGE_SIDE, path, bad)


def _check_config(config: object, spec: ModelSpec | None, path: str | Path, bad: str) -> None:
    """The parts of the run's config that --resume builds from before it reads the weights."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'config' is {_show(config)}, not a run's settings: {bad}")
    if config.get("image_size") is not None:
        _whole(config["image_size"], "the config's image_size", 1, MAX_IMAGE_SIDE, path, bad)
    if spec is None:
        return
    # --resume builds config["model"] with config["model_args"]: it must be the model whose
    # weights were just checked, or those arguments could ask for anything.
    for key, own in (("model", spec.name), ("model_args", spec.kwargs)):
        if key in config and config[key] != own:
            raise CheckpointError(f"{path}: the config's {key} {_show(config[key])} is not the "
                                  f"model's own ({_show(own)}): {bad}")


def _shapes(spec: ModelSpec) -> dict[str, torch.Size]:
    """The state-dict shapes of the model ``spec`` describes, built on the meta device (no
    memory) where its constructor allows; some (torchvision's RegNets) read their own freshly
    initialised values, which meta tensors do not have, and are built for real instead."""
    try:
        with torch.device("meta"):
            return {k: v.shape for k, v in create_model(spec).state_dict().items()}
    except NotImplementedError:
        return {k: v.shape for k, v in create_model(spec).state_dict().items()}


def _check_weights_fit(spec: ModelSpec, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """The model ``spec`` describes, built without memory, has exactly the shapes of ``state``."""
    try:
        expected = _shapes(spec)
    except DescendError as e:  # an unknown model, arguments it does not take
        raise CheckpointError(f"{path}: the model it describes cannot be built ({e}); "
                              f"{FROM_TRAIN}") from None
    except Exception as e:  # any failure of a model's constructor on odd arguments
        raise CheckpointError(f"{path}: the model it describes cannot be built ({type(e).__name__}"
                              f": {str(e).splitlines()[0][:120] if str(e) else ''}); "
                              f"{FROM_TRAIN}") from None
    problem = next(
        (f"{k} is missing" for k in expected if k not in state), None) or next(
        (f"{k} is not part of it" for k in state if k not in expected), None) or next(
        (f"{k} is {list(state[k].shape)}, the model has {list(expected[k])}"
         for k in expected if state[k].shape != expected[k]), None)
    if problem:
        raise CheckpointError(f"{path}: the weights do not fit the model {spec.name!r} it names "
                              f"({problem}); the checkpoint is damaged or was edited; "
                              f"{FROM_TRAIN}")


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    classes: list[str]
    mean: list[float]
    std: list[float]
    checkpoint: dict[str, Any]


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    ckpt = read_checkpoint(path)  # checked: the model fits its weights, so building it is safe
    spec = ModelSpec.from_dict(ckpt["model"])
    model = create_model(spec)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: the weights do not fit the model {spec.name!r} it names "
            f"({str(e).splitlines()[0][:160]})"
        ) from None
    model.to(device).eval()
    norm = ckpt["normalization"]
    return LoadedModel(model, spec, list(ckpt["classes"]), list(norm["mean"]), list(norm["std"]),
                       ckpt)
