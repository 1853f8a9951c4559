"""Self-describing checkpoints, written atomically and loaded without running code.

A checkpoint is a plain dict of tensors, numbers, strings and lists: the model's name and
arguments, class names, input size and channels, normalization, the training config, metrics
and library versions, so that ``eval`` and ``predict`` need nothing else. ``last.pt`` adds the
optimizer, scheduler, early-stopping and RNG state that ``--resume`` continues from.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot execute code.
"""

from __future__ import annotations

import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.errors import CheckpointError
from descend.io import atomic_write
from descend.models import ModelSpec, create_model

FORMAT = "descend-checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    import torchvision

    from descend import __version__

    return {"descend": __version__, "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "python": platform.python_version()}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(),
               **payload}
    atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
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
    return ckpt


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    classes: list[str]
    mean: list[float]
    std: list[float]
    checkpoint: dict[str, Any]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model a checkpoint describes and load its weights (eval mode)."""
    ckpt = read_checkpoint(path)
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
