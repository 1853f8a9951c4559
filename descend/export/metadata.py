"""What an exported model needs beside its graph: class names and how to make its input.

One JSON-able description, written three times so that every kind of user finds it: as the ONNX
model's ``metadata_props`` (each top-level key, its value as JSON text), as the TorchScript
file's extra file ``descend.json``, and as a ``NAME.json`` sidecar beside either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from descend.evaluation.predict import decode_geometry
from descend.runtime.checkpoint import LoadedModel
from descend.version import __version__

FORMAT = "descend-export"
FORMAT_VERSION = 1
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
EXTRA_FILE = "descend.json"  # the TorchScript extra file that carries the description


def sidecar_path(path: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``: the whole name, so two formats never share one."""
    return path.with_name(path.name + ".json")


def describe(loaded: LoadedModel, checkpoint: Path) -> dict[str, Any]:
    """The description of ``loaded`` exported from ``checkpoint``, as plain JSON values.

    The checkpoint is named by its folder and file only: an exported file travels, and the
    path of the machine it was made on is nobody's business.
    """
    (h, w), resize = decode_geometry(loaded)
    channels = loaded.spec.in_channels
    order = "L" if channels == 1 else "RGB"
    data = loaded.checkpoint.get("data")
    if isinstance(data, str) and data.startswith("imagefolder:"):
        data = f"imagefolder:{Path(data.removeprefix('imagefolder:')).name}"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "classes": list(loaded.classes),
        "input_name": INPUT_NAME,
        "input_shape": [None, channels, h, w],  # None: any batch size
        "input_dtype": "uint8",
        "channel_order": order,
        "resize": resize,
        "crop": [h, w],
        "interpolation": "bilinear",
        "decode": decode_steps(h, w, resize, order),
        "mean": list(loaded.mean),
        "std": list(loaded.std),
        "normalization": "inside the model: (pixels / 255 - mean) / std per channel",
        "output_name": OUTPUT_NAME,
        "output": "logits (N, classes) in the order of classes; softmax gives probabilities",
        "model": loaded.spec.to_dict(),
        "source": {"checkpoint": f"{checkpoint.parent.name}/{checkpoint.name}", "data": data,
                   "epoch": loaded.checkpoint.get("epoch"), "descend": __version__},
    }


def decode_steps(h: int, w: int, resize: int | None, order: str) -> str:
    """The decoding of `descend.data.images.load_pixels`, in words for a reader in any language."""
    colour = ("converted to grey (Pillow mode L)" if order == "L" else
              "converted to RGB (grey expanded to three channels)")
    scale = (f"scaled (bilinear, antialiased) so that its shorter side is {resize} pixels"
             if resize is not None else
             f"scaled (bilinear, antialiased), keeping its aspect ratio, to the smallest size "
             f"that covers {w}x{h}")
    return (f"decoded upright (EXIF orientation applied), transparency composited on white, "
            f"{colour}; {scale}; the centred {w}x{h} (width x height) window cut out; uint8, "
            f"channels first")
