"""Device choice, seeding and the deterministic mode."""

from __future__ import annotations

import os
import random

import torch

from descend.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; "
                          "use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    if on:
        # cuBLAS needs a fixed workspace to be deterministic; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on
