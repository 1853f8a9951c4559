"""Where a run's first weights come from: a descend run (``--init``), torchvision's pretrained
weights (``--pretrained``) or a weights file (``--weights``).

Each source is read before anything else of the run, because it also fills the settings the
user left open: the model and its arguments (``--init``), the input size and the normalization
the weights were trained with. The weights are then copied into the new model tensor by tensor
wherever the name and shape agree (`load_matching`); what does not fit, typically the last
layer when the classes differ, keeps its fresh initialisation and is "the new head" that
``--freeze-epochs`` trains alone first.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.config import TrainConfig
from descend.data.splits import ImageFiles, ImageTensors
from descend.errors import CheckpointError, ConfigError
from descend.models import is_torchvision_name, torchvision_models
from descend.models.efficientnet_lite import (
    BACKBONES,
    MEAN,
    STD,
    imagenet_classes,
    imagenet_state_dict,
)
from descend.runtime.checkpoint import read_checkpoint


@dataclass
class StartingWeights:
    """Weights to start from, what they were made with, and where they came from."""

    source: str  # for the log: "runs/a/best.pt", "torchvision ResNet18_Weights.IMAGENET1K_V1"
    state_dict: dict[str, torch.Tensor]
    settings: dict[str, Any] = field(default_factory=dict)  # fills what the user left open
    torchvision_layout: bool = False  # keys of a bare torchvision model (no InputAdapter)
    classes: list[str] | None = None  # what the weights' last layer predicts, when known

    def complete(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with the settings it left open (None) taken from the weights."""
        fill = {k: v for k, v in self.settings.items()
                if k != "model_args" and getattr(cfg, k) is None}
        if "model" in fill and not cfg.model_args:  # the checkpoint's model, as it was built
            fill["model_args"] = self.settings["model_args"]
        return cfg.updated(**fill) if fill else cfg


def starting_weights(cfg: TrainConfig) -> StartingWeights | None:
    """The weights ``--init``, ``--pretrained`` or ``--weights`` names, or None."""
    if cfg.init:
        return _from_run(cfg.init)
    if cfg.pretrained and (cfg.model or "") in BACKBONES:
        return _from_package(cfg)
    if cfg.pretrained:
        return _from_torchvision(cfg)
    if cfg.weights:
        return StartingWeights(cfg.weights, read_weights_file(cfg.weights),
                               torchvision_layout=is_torchvision_name(cfg.model))
    return None


def _from_run(path: str) -> StartingWeights:
    try:  # a run folder gives its best.pt; checked whole before its sizes fill the new run's
        ckpt = read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"--init: {e}") from None
    spec, norm = ckpt["model"], ckpt["normalization"]
    settings = {"model": spec["name"], "model_args": dict(spec.get("kwargs", {})),
                "image_size": int(spec["image_size"][0]), "mean": list(norm["mean"]),
                "std": list(norm["std"])}
    return StartingWeights(str(path), ckpt["state_dict"], settings,
                           classes=list(ckpt.get("classes", [])) or None)


def _from_package(cfg: TrainConfig) -> StartingWeights:
    """An efficientnet_lite model's ImageNet weights, from its installed package (offline)."""
    name = cfg.model or ""
    backbone = BACKBONES[name]
    settings: dict[str, Any] = {"mean": list(MEAN), "std": list(STD)}
    if (cfg.data or "").startswith("imagefolder:") and cfg.image_size is None \
            and cfg.resize is None and cfg.center_crop is None:
        # Photos have no size of their own: the centre crop the weights were trained on.
        settings.update(backbone.decode())
    return StartingWeights(f"{name}'s ImageNet weights ({backbone.package.replace('_', '-')})",
                           imagenet_state_dict(name), settings, classes=imagenet_classes())


def _from_torchvision(cfg: TrainConfig) -> StartingWeights:
    import torchvision.models as tvm
    from torch.hub import get_dir

    name = (cfg.model or "").removeprefix(torchvision_models.PREFIX)
    try:
        weights = tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ConfigError(f"torchvision has no pretrained weights for {name!r}") from None
    cached = Path(get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state = weights.get_state_dict(progress=cfg.progress, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError) as e:
        raise ConfigError(
            f"--pretrained: torchvision's {weights} weights are not in the cache and cannot be "
            f"downloaded ({str(e)[:80]}); download {weights.url} on a machine that can and put "
            f"it at {cached}, or pass --weights FILE"
        ) from None
    preprocess = weights.transforms()
    settings: dict[str, Any] = {"mean": list(preprocess.mean), "std": list(preprocess.std)}
    if (cfg.data or "").startswith("imagefolder:"):
        # Photos have no size of their own: train at the size the weights were made for.
        settings["image_size"] = int(preprocess.crop_size[0])
    return StartingWeights(f"torchvision {weights}", state, settings, torchvision_layout=True,
                           classes=list(weights.meta.get("categories") or []) or None)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (loaded with ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickled code, a truncated file, not a tensor file at all
        raise ConfigError(f"--weights {path} cannot be read as weights ({type(e).__name__}: "
                          f"{str(e)[:100]}); give a state dict saved with torch.save or "
                          "safetensors") from None
    for key in ("state_dict", "model"):  # common wrappers, a descend checkpoint among them
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ConfigError(f"--weights {path} holds no state dict (a mapping of names to "
                          "tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DDP's prefix


def load_matching(model: nn.Module, start: StartingWeights, classes: list[str]
                  ) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``start`` whose name and shape fit ``model``; (kept, new) names.

    The last layer (`head_names`) stays new when the weights predict other classes than
    ``classes``, even where the shapes agree: five old classes are not five new ones.
    """
    state = start.state_dict
    if start.torchvision_layout:  # descend wraps torchvision models in an InputAdapter
        state = {f"model.{k}": v for k, v in state.items()}
    own = model.state_dict()
    fresh = set(head_names(model, len(classes))) if start.classes not in (None, classes) \
        else set()
    kept = {k: v for k, v in state.items()
            if k in own and own[k].shape == v.shape and k not in fresh}
    if not kept:
        raise ConfigError(f"none of the weights of {start.source} fit the model (no tensor "
                          "with the same name and shape): start from weights of the same "
                          "architecture")
    model.load_state_dict(kept, strict=False)
    return list(kept), [k for k in own if k not in kept]


def head_names(model: nn.Module, num_classes: int) -> list[str]:
    """The tensors of the classifier's last layer: the last Linear or convolution whose
    output is one value per class (``fc``, ``classifier.1``, ``head.2``...)."""
    head: list[str] = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim >= 2 and \
                weight.shape[0] == num_classes:
            head = [f"{name}.{k}" for k, _ in module.named_parameters(recurse=False)]
    return head


def describe_start(start: StartingWeights, kept: list[str], new: list[str],
                   model: nn.Module) -> str:
    """One line: what was kept and what is new."""
    params = dict(model.named_parameters())
    new_params = [k for k in new if k in params]
    size = sum(params[k].numel() for k in new_params)
    head = (f"new: {', '.join(new_params[:6])}{' ...' if len(new_params) > 6 else ''} "
            f"({size:,} parameters, freshly initialised)" if new_params
            else "nothing new (the classes fit)")
    return f"initialised from {start.source}: kept {len(kept)} tensors; {head}"


WHITENING_SAMPLE = 5000  # images that estimate a patch covariance well (airbench uses 5000)


def init_from_data(model: nn.Module, split: ImageTensors | ImageFiles,
                   normalize: Callable[[torch.Tensor], torch.Tensor], seed: int) -> bool:
    """Let a model that sets layers from data (``init_from_data(images)``, e.g. fastres's
    whitening) see a random sample of normalized training images; False if it has no such
    layer. The sample depends only on ``seed``."""
    fit = getattr(model, "init_from_data", None)
    if fit is None or len(split) == 0:
        return False
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=g)[:WHITENING_SAMPLE]
    if isinstance(split, ImageTensors):
        pixels = split.images[index]
    else:  # files: decode the sample; an unusable file is left out
        decoded = []
        for i in index.tolist():
            try:
                decoded.append(torch.from_numpy(split.load(i)))
            except Exception:  # noqa: BLE001 - the loader reports bad files; skip them here
                continue
        if not decoded:
            return False
        pixels = torch.stack(decoded)
    fit(normalize(pixels))
    return True
