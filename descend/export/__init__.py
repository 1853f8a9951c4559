"""``descend export``: a checkpoint as one file that runs without descend (SPEC §7).

The exported model takes decoded uint8 pixels (N, C, H, W) at the model's input size, converts
and normalizes them inside its graph, and returns logits (N, classes). How to decode an image
into those pixels, the class names and the rest are in the file's own metadata and in a
``NAME.json`` sidecar (`descend.export.metadata`). Nothing is written until the exported file
has given the checkpoint's logits on random batches (`descend.export.checks`).

    from descend.export import export_checkpoint
    export_checkpoint("runs/x", "onnx").path                # runs/x/model.onnx
    export_checkpoint("runs/x", "onnx", "exports/x").path   # exports/x/model.onnx
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.errors import ConfigError
from descend.export.checks import EXAMPLE_BATCH, ExportError, random_pixels
from descend.export.metadata import describe, sidecar_path
from descend.export.wrapper import PixelClassifier
from descend.io import atomic_write, atomic_write_text
from descend.runtime.checkpoint import load_model

Exporter = Callable[[nn.Module, torch.Tensor, dict[str, Any]], tuple[bytes, float]]


def _onnx(*args: Any) -> tuple[bytes, float]:
    from descend.export.onnx_export import export_onnx

    return export_onnx(*args)


def _torchscript(*args: Any) -> tuple[bytes, float]:
    from descend.export.torchscript_export import export_torchscript

    return export_torchscript(*args)


# format -> (the file's name in the folder written to, exporter). The TorchScript name says what it
# is: a plain model.pt beside best.pt would pass for a checkpoint.
FORMATS: dict[str, tuple[str, Exporter]] = {
    "onnx": ("model.onnx", _onnx),
    "torchscript": ("model.torchscript.pt", _torchscript),
}


@dataclass
class Exported:
    path: Path
    sidecar: Path
    format: str
    description: dict[str, Any]
    max_difference: float  # the largest logit difference from the checkpoint in the check
    size: int  # bytes

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sidecar": str(self.sidecar), "format": self.format,
                "bytes": self.size, "max_difference": self.max_difference,
                "description": self.description}


def export_checkpoint(checkpoint: str | os.PathLike[str], format: str = "onnx",
                      out: str | os.PathLike[str] | None = None,
                      overwrite: bool = False) -> Exported:
    """Export ``checkpoint`` (a best.pt / last.pt, or a run folder) as ``format``.

    ``out``: the folder to write ``model.onnx`` / ``model.torchscript.pt`` and its ``.json``
    description into (default: the checkpoint's folder). A path ending in ``.onnx`` or ``.pt``
    is still taken as the file itself, this release (`legacy_file_out`). An existing file is
    replaced only with ``overwrite``, the checkpoint never.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    default_name, exporter = FORMATS[format]
    loaded = load_model(checkpoint, "cpu")  # a missing or bad checkpoint stops here, clearly
    source = checkpoint_file(Path(checkpoint))
    path = output_path(source, default_name, out)
    check_output(path, source, overwrite)
    wrapper = PixelClassifier(loaded.model, loaded.mean, loaded.std).eval()
    description = describe(loaded, source)
    shape = tuple(description["input_shape"][1:])
    data, difference = exporter(wrapper, random_pixels(shape, EXAMPLE_BATCH), description)
    atomic_write(path, lambda f: f.write(data))
    sidecar = sidecar_path(path)
    atomic_write_text(sidecar, json.dumps(description, indent=2, ensure_ascii=False) + "\n")
    return Exported(path, sidecar, format, description, difference, len(data))


def checkpoint_file(path: Path) -> Path:
    """The file a checkpoint argument names: a run folder's best.pt, else its last.pt (as
    `descend.runtime.checkpoint.read_checkpoint` chooses)."""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def output_path(source: Path, default_name: str, out: str | os.PathLike[str] | None) -> Path:
    """``out/default_name`` (default: beside the checkpoint), or ``out`` itself where it names
    a file the old way (`legacy_file_out`)."""
    if out is None:
        return source.parent / default_name
    return Path(out) if legacy_file_out(out) else Path(out) / default_name


def legacy_file_out(out: str | os.PathLike[str]) -> bool:
    """Whether ``out`` names the export's file, as ``--out`` did before it named the folder: a
    path ending in ``.onnx`` or ``.pt`` that is not an existing folder."""
    text = str(out)
    return (text.endswith((".onnx", ".pt")) and not text.endswith(("/", os.sep))
            and not Path(out).is_dir())


def check_output(path: Path, source: Path, overwrite: bool) -> None:
    """Refuse to replace a checkpoint (this one or any other), or an earlier export without
    ``overwrite``."""
    if path.exists() and path.resolve() == source.resolve():
        raise ConfigError(f"--out {path} is the checkpoint being exported: choose another --out")
    if _is_torch_save(path):  # a best.pt / last.pt: --overwrite is for exports, not for runs
        raise ConfigError(f"--out {path} is a PyTorch checkpoint, which an export never "
                          "replaces: choose another --out")
    existing = [p for p in (path, sidecar_path(path)) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists: pass --overwrite to replace it, or "
                          "choose another --out")


def _is_torch_save(path: Path) -> bool:
    """A file written by ``torch.save``: a zip with a data.pkl. A TorchScript file is one too,
    but also holds its code."""
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return (any(n.endswith("/data.pkl") for n in names)
            and not any("/code/" in n for n in names))


__all__ = ["FORMATS", "Exported", "ExportError", "export_checkpoint", "legacy_file_out"]
