"""TrainConfig: the one truth for a training run.

The command line, a config file (TOML, YAML or JSON) and the Python API all fill this object,
and every checkpoint stores it. Each default says why it has its value: together they are the
recipe that ``descend train`` runs with no flags (see BENCHMARKS.md for what it reaches).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from descend.errors import ConfigError


@dataclass
class TrainConfig:
    # --- data -----------------------------------------------------------------------------
    data: str | None = None  # None: cifar10, or the built-in cifar10-sample when it is absent
    data_root: str | None = None  # else $DESCEND_DATA, else ~/.cache/descend/datasets
    cache_dir: str | None = None  # else $DESCEND_CACHE, else ~/.cache/descend/cache
    image_size: int | None = None  # None: the dataset's own size (64 for image folders)
    val_fraction: float | None = None  # None: official test split, 0.2 for a flat image folder
    augment: str = "crop:4,hflip"  # the two augmentations that pay on small images
    mean: list[float] | None = None  # None: computed from the training split
    std: list[float] | None = None
    batch_size: int = 256  # large enough to keep 2 CPU cores busy, small enough to generalise
    drop_last: bool = True  # a last batch of one breaks BatchNorm and skews the epoch
    strict: bool = False  # True: an unusable image file stops the run, naming it
    download: bool = True  # False: never touch the network, fail if the data is absent
    # --- model ----------------------------------------------------------------------------
    model: str = "cnn"  # the fastest to a good accuracy on a CPU (BENCHMARKS.md)
    model_args: dict[str, Any] = field(default_factory=dict)
    # --- optimization ---------------------------------------------------------------------
    optimizer: str = "nesterov"  # SGD + Nesterov momentum: the CIFAR-10 standard
    lr: float = 0.2  # peak learning rate of the one-cycle schedule at batch 256
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 as in the ResNet recipes; AdamW decouples it
    label_smoothing: float = 0.1  # cheap regularisation, worth ~1% on CIFAR-10
    ema_decay: float = 0.0  # > 0: validate and keep an EMA of the weights (e.g. 0.999)
    epochs: int = 8
    schedule: str = "onecycle"  # warm up then anneal: the fastest schedule for short runs
    warmup_epochs: float = 1.0  # cosine schedule warm-up (onecycle warms up by itself)
    step_size: int = 10  # step schedule: epochs between decays
    gamma: float = 0.1  # step, multistep, exponential: decay factor
    milestones: list[int] = field(default_factory=lambda: [10, 15])  # multistep epochs
    plateau_patience: int = 3  # reduce-on-plateau: epochs without improvement
    # --- early stopping and checkpoints ---------------------------------------------------
    monitor: str = "val_acc"  # the metric that picks `best.pt` and drives early stopping
    early_stop: int = 0  # patience in epochs; 0 turns early stopping off
    min_delta: float = 0.0
    # --- machine --------------------------------------------------------------------------
    seed: int = 0
    deterministic: bool = False  # bit-exact reruns at some cost in speed
    device: str = "auto"  # cuda, then mps, then cpu
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # 1.3-1.6x faster convolutions on CPU and GPU alike
    compile: bool = False  # torch.compile the model (slow start, faster steps on GPU)
    eval_batch_size: int = 1024
    # --- output ---------------------------------------------------------------------------
    out: str | None = None  # None: runs/<data>-<model>-<time>
    overwrite: bool = False
    progress: bool = True
    tensorboard: bool = False

    def validate(self) -> TrainConfig:
        positive = {"lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size,
                    "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be a positive number, got {value!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "early_stop", "step_size"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number")
        nonneg = {"weight_decay": self.weight_decay, "momentum": self.momentum,
                  "label_smoothing": self.label_smoothing, "early_stop": self.early_stop,
                  "min_delta": self.min_delta, "warmup_epochs": self.warmup_epochs}
        for name, value in nonneg.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {value!r}")
        if not self.label_smoothing < 1:
            raise ConfigError("--label-smoothing must be below 1")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.momentum < 1:
            raise ConfigError("--momentum must be below 1")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"--image-size must be at least 8 pixels, got {self.image_size}")
        if self.monitor not in ("val_acc", "val_loss"):
            raise ConfigError(f"--monitor must be val_acc or val_loss, got {self.monitor!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith(
            "cuda:"
        ):
            raise ConfigError(f"--device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, list) or not v):
                raise ConfigError(f"{name} must be a list of per-channel numbers")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError("every std value must be positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        clean = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(clean) - cls.field_names())
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; valid settings are: "
                f"{', '.join(sorted(cls.field_names()))}"
            )
        return cls(**clean)

    def updated(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file of TrainConfig settings (a ``[train]`` table is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml, .yml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ConfigError(f"config file {path} cannot be parsed: {e}") from None
    except Exception as e:  # yaml.YAMLError, without importing yaml at module load
        raise ConfigError(f"config file {path} cannot be parsed: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    if isinstance(values.get("train"), dict):
        values = values["train"]
    return values
