"""Explanations: where in an image lay the evidence for the class the model chose.

A heat map over the pixels the model saw (decoded as training decoded them), scaled to [0, 1]
by its maximum, made with Captum (the PyTorch project's attribution library):

- a model with convolutions (fastres, cnn, tv:NAME): Grad-CAM (Selvaraju et al. 2017). With
  A^k the k-th channel of a convolution's output and y^c the logit of class c::

      a_k^c = mean_ij  dy^c / dA^k_ij          (how much channel k matters to c)
      L^c   = ReLU(sum_k a_k^c A^k)            (where the channels that matter fire)

  upsampled bilinearly to the input size. The layer is found by a forward pass of a blank
  image: the last ``Conv2d`` to run whose output still has more than one pixel, the deepest
  layer that still says *where* (fastres at 32 px: ``groups.2.conv2``, 3 x 3; at 16 px the
  last convolution sees 1 x 1, so ``groups.2.conv1``).
- a model without one (mlp, or a convolutional net whose convolutions all end at 1 x 1):
  Integrated Gradients (Sundararajan et al. 2017) from the black of the normalized input (0,
  the dataset's mean colour), ``(x - x') * mean_t dy^c/dx (x' + t (x - x'))`` summed over
  channels, positive part: the evidence *for* c, as Grad-CAM's ReLU keeps it.

The class explained is the one the model predicts (``descend predict``'s top class) unless a
target is given. fastres's test-time augmentation (``tta``) runs the network on several views
and averages them; while explaining, ``tta`` is set to 0, so the map is of the image as given,
for the class the full model chose. (Maps of a flipped view would need flipping back, and
Grad-CAM's layer would fire once per view.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from descend.data.batching import Normalize
from descend.runtime.checkpoint import LoadedModel

if TYPE_CHECKING:
    from descend.evaluation.predict import Classifier, Prediction

# Riemann steps of Integrated Gradients. The attributions should sum to y(x) - y(x'); on a
# trained 32 px mlp the median error was 4.3% at 8 steps, 2.1% at 16, 1.4% at 32, 0.7% at 64
# (worst of 32 images: 79%, 14%, 7%, 3%): 32 is the knee, at 32 forward passes per image.
IG_STEPS = 32
# Images per backward pass: a folder of photos at 224 px never fills the memory.
BATCH = 32

GRAD_CAM = "grad-cam"
INTEGRATED_GRADIENTS = "integrated-gradients"


@contextmanager
def without_tta(model: nn.Module) -> Iterator[None]:
    """fastres with its test-time augmentation off for the duration (restored after)."""
    tta = getattr(model, "tta", None)
    if isinstance(tta, int) and tta:
        model.tta = 0  # type: ignore[assignment]
    try:
        yield
    finally:
        if isinstance(tta, int) and tta:
            model.tta = tta  # type: ignore[assignment]


def target_layer(model: nn.Module, shape: tuple[int, int, int],
                 device: torch.device | str = "cpu") -> str | None:
    """The name of the last ``Conv2d`` to run whose output has more than one pixel, for an input
    of ``shape`` (C, H, W); None when there is none."""
    pixels: dict[str, int] = {}  # in the order the layers first run

    def hook(name: str):  # noqa: ANN202
        def record(module: nn.Module, inputs: object, out: torch.Tensor) -> None:
            pixels.setdefault(name, out.shape[-2] * out.shape[-1])  # (a returned value would
        return record                                                # replace the output)

    hooks = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), without_tta(model):
            model(torch.zeros(1, *shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    spatial = [name for name, n in pixels.items() if n > 1]
    return spatial[-1] if spatial else None


@dataclass
class Explainer:
    """Heat maps of a loaded checkpoint's evidence: ``Explainer(loaded, device).maps(pixels)``."""

    loaded: LoadedModel
    device: torch.device

    def __post_init__(self) -> None:
        self.normalize = Normalize(self.loaded.mean, self.loaded.std, self.device)
        shape = (self.loaded.spec.in_channels, *self.loaded.spec.image_size)
        self.layer = target_layer(self.loaded.model, shape, self.device)
        self.method = GRAD_CAM if self.layer else INTEGRATED_GRADIENTS

    def describe(self) -> dict[str, str | None]:
        """What the maps are: the method and, for Grad-CAM, the layer."""
        return {"method": self.method, "layer": self.layer}

    def maps(self, pixels: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 heat maps (N, H, W) in [0, 1], on the CPU, of uint8 pixels (N, C, H, W)
        decoded as the run decoded its images, for ``targets`` (class indices; default: the
        classes the model predicts)."""
        model = self.loaded.model
        model.eval()
        if targets is None:
            with torch.no_grad():
                targets = torch.cat([model(self.normalize(pixels[i:i + BATCH].to(self.device)))
                                     .argmax(1).cpu() for i in range(0, len(pixels), BATCH)])
        out = [self._attribute(pixels[i:i + BATCH], targets[i:i + BATCH])
               for i in range(0, len(pixels), BATCH)]
        return torch.cat(out) if out else torch.empty(0, *pixels.shape[2:])

    def _attribute(self, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

        model = self.loaded.model
        x = self.normalize(pixels.to(self.device)).requires_grad_(True)
        target = targets.to(self.device)
        with torch.enable_grad(), without_tta(model):
            if self.layer is not None:
                layer = model.get_submodule(self.layer)
                cam = LayerGradCam(model, layer).attribute(x, target=target,
                                                           relu_attributions=True)
                heat = LayerAttribution.interpolate(cam, tuple(x.shape[2:]),
                                                    interpolate_mode="bilinear")[:, 0]
            else:
                ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x),
                                                          target=target, n_steps=IG_STEPS)
                heat = ig.sum(1)
        heat = heat.detach().float().clamp(min=0).cpu()
        # Bilinear upsampling of a ReLU'd map stays >= 0; scale each to its own maximum.
        peak = heat.flatten(1).amax(1).clamp(min=1e-12)
        return heat / peak[:, None, None]


def explanation_names(sources: list[str]) -> list[str]:
    """``<stem>.explain.png`` for each source, ``<stem>-2.explain.png`` (and on) for a stem seen
    before (``a/cat.jpg`` and ``b/cat.jpg``), so that no explanation overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for source in sources:
        stem = Path(source).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.explain.png" if seen[stem] == 1 else
                     f"{stem}-{seen[stem]}.explain.png")
    return names


def explain_files(classifier: Classifier, predictions: Sequence[Prediction],
                  out_dir: str | Path) -> list[str | None]:
    """Write ``out_dir/<stem>.explain.png`` for each prediction's file: its picture as the model
    saw it and its heat map for the predicted class. Returns the PNG paths (None for a file that
    could no longer be read)."""
    from descend.reports.plots import save_explanation

    explainer = Explainer(classifier.loaded, classifier.device)
    out = Path(out_dir)
    paths: list[str | None] = []
    names = explanation_names([p.source for p in predictions])
    for start in range(0, len(predictions), BATCH):
        chunk, pixels, targets = [], [], []
        for k in range(start, min(start + BATCH, len(predictions))):
            try:
                pixels.append(classifier.to_pixels(predictions[k].source))
            except Exception:  # changed on disk since it was predicted: no picture to show
                paths.append(None)
                continue
            chunk.append(k)
            targets.append(classifier.classes.index(predictions[k].top[0][0]))
            paths.append(None)
        if not chunk:
            continue
        stacked = torch.stack(pixels)
        for k, img, heat in zip(chunk, stacked, explainer.maps(stacked, torch.tensor(targets))):
            save_explanation(img, heat, out / names[k])
            paths[k] = str(out / names[k])
    return paths
