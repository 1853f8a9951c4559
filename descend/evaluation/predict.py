"""Prediction on PIL images, paths, bytes or tensors, preprocessed exactly as in training.

Any size or mode is converted (`descend.data.images`) and fitted to the model's input size with
the same resize-and-centre-crop that decoded the training images, then normalized with the
checkpoint's statistics.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from descend.data.images import IMAGE_SUFFIXES, BadImage, load_pixels
from descend.errors import DataError
from descend.training.checkpoint import LoadedModel, load_model
from descend.training.device import pick_device

ImageLike = str | os.PathLike[str] | bytes | Image.Image | torch.Tensor


@dataclass
class Prediction:
    source: str
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.source,
                "predictions": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}


class Classifier:
    """A trained model ready to predict: ``Classifier.load("runs/x/best.pt").predict([img])``."""

    def __init__(self, loaded: LoadedModel, device: torch.device) -> None:
        self.loaded, self.device = loaded, device
        self.classes = loaded.classes
        c = loaded.spec.in_channels
        self.mean = torch.tensor(loaded.mean, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(loaded.std, device=device).view(1, c, 1, 1)

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str], device: str = "auto") -> Classifier:
        dev = pick_device(device)
        return cls(load_model(checkpoint, dev), dev)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.loaded.spec.image_size

    def to_pixels(self, image: ImageLike) -> torch.Tensor:
        """uint8 (C, H, W) at the model's input size."""
        c = self.loaded.spec.in_channels
        if isinstance(image, torch.Tensor):
            t = image
            if t.dim() != 3:
                raise DataError(f"an image tensor must be (C, H, W), got shape {tuple(t.shape)}")
            if t.dtype != torch.uint8:
                t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
            if t.shape[0] != c:
                t = t.float().mean(0, keepdim=True) if c == 1 else t[:1].expand(3, -1, -1)
                t = t.round().to(torch.uint8)
            if tuple(t.shape[1:]) != self.input_size:
                t = F.interpolate(t[None].float(), size=self.input_size, mode="bilinear",
                                  antialias=True, align_corners=False)[0].round().clamp(0, 255)
                t = t.to(torch.uint8)
            return t
        return torch.from_numpy(np.asarray(load_pixels(image, self.input_size, c)))

    @torch.no_grad()
    def probabilities(self, images: Sequence[ImageLike]) -> torch.Tensor:
        batch = torch.stack([self.to_pixels(im) for im in images]).to(self.device)
        x = (batch.float() / 255 - self.mean) / self.std
        return F.softmax(self.loaded.model(x).float(), dim=1).cpu()

    def predict(self, images: Sequence[ImageLike], top_k: int = 3) -> list[Prediction]:
        probs = self.probabilities(images)
        k = min(top_k, len(self.classes))
        values, index = probs.topk(k, dim=1)
        out = []
        for im, v, i in zip(images, values.tolist(), index.tolist()):
            name = str(im) if isinstance(im, (str, os.PathLike)) else type(im).__name__
            out.append(Prediction(name, [(self.classes[j], p) for j, p in zip(i, v)]))
        return out


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given, folders searched for image files, globs expanded; misses are errors."""
    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                errors.append({"path": item, "error": "folder holds no image files"})
            files += found
        elif p.is_file():
            files.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                errors.append({"path": item, "error": "pattern matches no file"})
            files += matches
        else:
            errors.append({"path": item, "error": "no such file or folder"})
    return files, errors


def predict_files(
    classifier: Classifier, files: Sequence[Path], top_k: int = 3, batch_size: int = 64
) -> tuple[list[Prediction], list[dict[str, str]]]:
    """Predict every readable file; unreadable ones are returned as errors, not raised."""
    predictions: list[Prediction] = []
    errors: list[dict[str, str]] = []
    for start in range(0, len(files), batch_size):
        chunk, pixels = [], []
        for f in files[start:start + batch_size]:
            try:
                pixels.append(classifier.to_pixels(f))
                chunk.append(f)
            except BadImage as e:
                errors.append({"path": str(f), "error": f"{e.reason}: {e.detail}".rstrip(": ")})
        if chunk:
            for p, f in zip(classifier.predict(pixels, top_k), chunk):
                predictions.append(Prediction(str(f), p.top))
    return predictions, errors
