"""Prediction on paths, bytes, PIL images or arrays, decoded exactly as the training images were.

Every input goes through the training decoder, `descend.data.images.load_pixels`, with the run's
decoding geometry (`descend.data.geometry`: ``--resize`` and ``--center-crop``, replayed from
the checkpoint), and through the loader's `Normalize` with the
checkpoint's statistics: a file predicted here gives the logits the run's own evaluation gives.
An array or tensor is first made the PIL image it describes, so that it meets the same rules as
a file: transparency composited on white, grey expanded to RGB (or RGB reduced to grey for a
one-channel model), the same resize and centre crop.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from descend.data.batching import Normalize
from descend.data.images import IMAGE_SUFFIXES, BadImage, load_pixels
from descend.errors import DataError
from descend.runtime.checkpoint import LoadedModel, load_model
from descend.runtime.device import pick_device

ArrayLike = torch.Tensor | np.ndarray
ImageLike = str | os.PathLike[str] | bytes | Image.Image | ArrayLike
# Channel counts an array may carry: grey (PIL's L), LA, RGB, RGBA.
CHANNELS = (1, 2, 3, 4)


@dataclass
class Prediction:
    source: str
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.source,
                "predictions": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}


def decode_geometry(loaded: LoadedModel) -> tuple[tuple[int, int], int | None]:
    """((h, w), resize): how the run decoded its images, for `load_pixels`.

    The size is the model's input size; ``resize`` is the checkpoint's stored ``geometry``
    (`descend.runtime.migrate` replays it from the config of a run that stored none; a model
    built in memory, with no checkpoint, decodes at its input size).
    """
    resize = loaded.checkpoint.get("geometry", {}).get("resize")
    return loaded.spec.image_size, int(resize) if resize is not None else None


def image_from_array(array: ArrayLike) -> Image.Image:
    """The PIL image an (H, W), (C, H, W) or (H, W, C) array describes: uint8 0-255 or floats
    0-1; C is 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGBA).

    Which axis holds the channels: the one of size 1-4, and when both ends could, the first
    for a torch tensor (torch's CHW) and the last for a NumPy array (PIL's and NumPy's HWC).
    """
    is_tensor = isinstance(array, torch.Tensor)
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"an image array must be (H, W), (C, H, W) or (H, W, C), got shape "
                        f"{a.shape}; pass a batch as a list or an (N, C, H, W) array")
    first, last = a.shape[0] in CHANNELS, a.shape[2] in CHANNELS
    if first and (is_tensor or not last):
        a = a.transpose(1, 2, 0)
    elif not last:
        raise DataError(f"an image array needs 1, 2, 3 or 4 channels first or last, got shape "
                        f"{a.shape}")
    a = _to_uint8(a)
    # Pillow reads the mode from the shape: (H, W) L, (H, W, 2) LA, 3 RGB, 4 RGBA.
    return Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[2] == 1 else a))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if a.dtype.kind == "f":
        if lo < 0 or hi > 1:
            raise DataError(f"a float image must hold values in [0, 1], these span [{lo:.3g}, "
                            f"{hi:.3g}]; pass uint8 pixels 0-255, or floats divided by 255 "
                            "(not normalized ones)")
        return np.round(a * 255.0).astype(np.uint8)
    if a.dtype.kind in "iu" and lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    raise DataError(f"an image array must be uint8 (0-255) or float (0-1), got {a.dtype} "
                    f"spanning [{lo:.3g}, {hi:.3g}]")


def _is_one_image(images: object) -> bool:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        return images.ndim <= 3
    return isinstance(images, (str, os.PathLike, bytes, Image.Image))


def _items(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    if _is_one_image(images):
        return [images]  # type: ignore[list-item]
    return list(images)  # type: ignore[arg-type]  # a list, or the rows of an (N, ...) array


def _name(image: ImageLike) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__


class Classifier:
    """A trained model ready to predict: ``descend.load("runs/x/best.pt").predict("cat.jpg")``."""

    batch_size = 64  # images per forward pass: a long list of photos never fills the memory

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        self.loaded, self.device = loaded, device
        self.classes = loaded.classes
        self.size, self.resize = decode_geometry(loaded)
        self.normalize = Normalize(loaded.mean, loaded.std, device)

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str], device: str = "auto") -> Classifier:
        dev = pick_device(device)
        return cls(load_model(checkpoint, dev), dev)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.loaded.spec.image_size

    def to_pixels(self, image: ImageLike, *, max_pixels: int | None = None) -> torch.Tensor:
        """uint8 (C, H, W): ``image`` decoded as the run decoded its training images.

        Raises `BadImage` (a `DataError`) for a file that is not a usable image, and for one of
        more than ``max_pixels`` pixels (None: Pillow's limit), refused from its header.
        """
        if isinstance(image, (torch.Tensor, np.ndarray)):
            image = image_from_array(image)
        pixels = load_pixels(image, self.size, self.loaded.spec.in_channels, resize=self.resize,
                             max_pixels=max_pixels)
        return torch.from_numpy(pixels)

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Float32 logits (N, classes), on the CPU, of decoded uint8 pixels (N, C, H, W)."""
        self.loaded.model.eval()
        out = [self.loaded.model(self.normalize(pixels[i:i + self.batch_size].to(self.device)))
               .float().cpu() for i in range(0, len(pixels), self.batch_size)]
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def probabilities(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """Softmax probabilities (N, classes); one image gives N = 1."""
        pixels = [self.to_pixels(im) for im in _items(images)]
        if not pixels:
            return torch.empty(0, len(self.classes))
        return F.softmax(self.logits(torch.stack(pixels)), dim=1)

    def predict(self, images: ImageLike | Sequence[ImageLike],
                top_k: int = 3) -> Prediction | list[Prediction]:
        """The ``top_k`` classes of each image, most probable first.

        One image (a path, bytes, a PIL image, a (C, H, W) / (H, W, C) array) gives one
        `Prediction`; a list or tuple of them, or an (N, C, H, W) array, a list.
        """
        items = _items(images)
        out = self.top(self.probabilities(items), [_name(im) for im in items], top_k)
        return out[0] if _is_one_image(images) else out

    def top(self, probs: torch.Tensor, names: Sequence[str], top_k: int) -> list[Prediction]:
        """One `Prediction` per row of ``probs`` (N, classes), named by ``names``."""
        values, index = probs.topk(min(top_k, len(self.classes)), dim=1)
        return [Prediction(name, [(self.classes[j], p) for j, p in zip(i, v)])
                for name, v, i in zip(names, values.tolist(), index.tolist())]

    def explain(self, images: ImageLike | Sequence[ImageLike]) -> torch.Tensor:
        """Heat maps (N, H, W) in [0, 1] of the evidence for each image's predicted class, over
        its decoded pixels (`descend.evaluation.explain`: Grad-CAM, or Integrated Gradients for a
        model without convolutions)."""
        from descend.evaluation.explain import Explainer

        pixels = [self.to_pixels(im) for im in _items(images)]
        if not pixels:
            return torch.empty(0, *self.input_size)
        return Explainer(self.loaded, self.device).maps(torch.stack(pixels))


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given, folders searched for image files, globs expanded; misses are errors."""
    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for item in items:
        try:
            found, error = _expand(item)
        except OSError as e:  # a folder on the way that cannot be listed
            found, error = [], f"unreadable: {e.strerror or e}"
        files += found
        if error:
            errors.append({"path": item, "error": error})
    return files, errors


def _expand(item: str) -> tuple[list[Path], str | None]:
    p = Path(item)
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file()
                       and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        return found, None if found else "folder holds no image files"
    if p.is_file():
        return [p], None
    if any(ch in item for ch in "*?["):
        matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
        return matches, None if matches else "pattern matches no file"
    return [], "no such file or folder"


def predict_files(
    classifier: Classifier, files: Sequence[Path], top_k: int = 3, batch_size: int = 64,
    progress: bool = False,
) -> tuple[list[Prediction], list[dict[str, str]]]:
    """Predict every readable file; unreadable ones are returned as errors, not raised.
    ``progress``: a bar on stderr, a batch at a time."""
    from tqdm import tqdm

    predictions: list[Prediction] = []
    errors: list[dict[str, str]] = []
    starts = range(0, len(files), batch_size)
    bar_off = not progress or len(starts) < 2  # one batch: over before a bar says anything
    for start in tqdm(starts, desc="predict", unit="batch", disable=bar_off, file=sys.stderr,
                      leave=False):
        chunk, pixels = [], []
        for f in files[start:start + batch_size]:
            try:
                pixels.append(classifier.to_pixels(f))
                chunk.append(f)
            except Exception as e:  # one bad file is that file's error, never the whole run's
                errors.append({"path": str(f), "error": _describe(e)})
        if chunk:
            probs = F.softmax(classifier.logits(torch.stack(pixels)), dim=1)
            predictions += classifier.top(probs, [str(f) for f in chunk], top_k)
    return predictions, errors


def _describe(e: Exception) -> str:
    if isinstance(e, BadImage):
        return f"{e.reason}: {e.detail}".rstrip(": ")
    if isinstance(e, OSError):  # no permission, an I/O error: the bytes could not be read
        return f"unreadable: {e.strerror or e}"
    return f"corrupt: {type(e).__name__}: {e}"  # a conversion Pillow cannot do, as in training
