"""TrainConfig: the one truth for a training run.

The command line, a config file (TOML, YAML or JSON) and the Python API all fill this object,
and every checkpoint stores it. Each setting is declared once, with `setting`: its default, its
help (what it does and why the default has its value) and its group. The flags of
``descend train`` and ``descend optim compare`` are generated from these declarations
(`descend.cli.flags`), and file values are converted by the same `convert` as flag text, so a
default, a type, a help line and the values it admits (`Bounds`, ``choices``) each live in
exactly one place. Together the defaults are the
recipe that ``descend train`` runs with no flags (see BENCHMARKS.md for what it reaches).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.data.geometry import Geometry, split_geometry
from descend.data.options import DataOptions
from descend.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Bounds:
    """The numbers a setting admits (each item, for a list): above ``low`` (or from it, when
    ``from_low``) and below ``high`` (or up to it, when ``to_high``)."""

    low: float | None = None
    high: float | None = None
    from_low: bool = True
    to_high: bool = False

    def admit(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low
                                                          and not self.from_low)):
            return False
        return self.high is None or value < self.high or (value == self.high and self.to_high)

    def describe(self) -> str:
        if self.high is not None:
            return (f"in {'[' if self.from_low else '('}{self.low:g}, {self.high:g}"
                    f"{']' if self.to_high else ')'}")
        if self.low == 0:
            return "0 or more" if self.from_low else "a positive number"
        return f"at least {self.low:g}" if self.from_low else f"more than {self.low:g}"


POSITIVE = Bounds(0, from_low=False)
NON_NEGATIVE = Bounds(0)
FRACTION = Bounds(0, 1)  # [0, 1)
# The schedules that are a function of the run's planned length (descend/training/fitting/
# schedules.py): resuming cannot stretch them.
FIXED_LENGTH = ("onecycle", "cosine", "linear")


# Help that lists the registries' entries is written when the help is shown, not when this
# module is imported: the config stays importable without torch (Python 3.10's check reads a
# config file with tomli alone).
Text = str | Callable[[], str]


def text(value: Text | None) -> str | None:
    """A help text, written now if it is made from the registries."""
    return value() if callable(value) else value


def _datasets() -> str:
    from descend.data.datasets import datasets_help

    return datasets_help()


def _mirroring() -> str:
    from descend.data.datasets import mirroring_help

    return mirroring_help()


def _models() -> str:
    from descend.models.registry import models_help

    return models_help()


def _weights() -> str:
    from descend.models.registry import weights_help

    return weights_help()


def _recipe(setting_name: str) -> str:
    from descend.models.registry import recipe_help

    return recipe_help(setting_name)


def _default_model() -> str:
    from descend.models.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


def setting(default: Any, help: Text, *, group: str, default_text: Text | None = None,
            flag: str | None = None, metavar: str | None = None, bounds: Bounds | None = None,
            choices: tuple[str, ...] | None = None, words: tuple[str, ...] = ()) -> Any:
    """A TrainConfig field with its help (``default_text`` says what a None default means) and
    the values it admits: ``bounds`` for a number, ``choices`` for text, and ``words`` a number
    setting also takes (``--lr auto``). Whole numbers are the field's type (``int``);
    constraints between settings are in `TrainConfig.validate`."""
    meta = {"help": help, "group": group, "default_text": default_text, "flag": flag,
            "metavar": metavar, "bounds": bounds, "choices": choices, "words": words}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_data = functools.partial(setting, group="data")
_model = functools.partial(setting, group="model and optimization")
_stop = functools.partial(setting, group="early stopping")
_machine = functools.partial(setting, group="machine")
_output = functools.partial(setting, group="output")


@dataclass(frozen=True)
class TrainConfig:
    # --- data -----------------------------------------------------------------------------
    # A None default is resolved when the run starts (from the data, or the --init weights) and
    # the checkpoint stores the resolved value.
    data: str | None = _data(
        None, _datasets,
        default_text="cifar10, else the built-in cifar10-sample when CIFAR-10 is absent")
    data_root: str | None = _data(None, "where datasets live",
                                  default_text="$DESCEND_DATA, else ~/.cache/descend/datasets")
    cache_dir: str | None = _data(None, "where decoded caches go",
                                  default_text="$DESCEND_CACHE, else ~/.cache/descend/cache")
    image_size: int | None = _data(None, "side of the square images the model sees",
                                   default_text="the dataset's own, 64 for image folders",
                                   bounds=Bounds(8))
    resize: int | None = _data(
        None, "decode images with their shorter side scaled to this many pixels, then take "
        "the centred square (torchvision's Resize)", default_text="scale to just cover "
        "--image-size", bounds=Bounds(8))
    center_crop: int | None = _data(
        None, "decode the centred N x N window of the image at --resize (else at the "
        "dataset's own size): torchvision's CenterCrop", metavar="N", default_text="off",
        bounds=Bounds(8))
    val_fraction: float | None = _data(
        None, "hold out this share of each class for validation",
        default_text="the official test split; 0.2 for a flat image folder", bounds=FRACTION)
    augment: str | None = _data(
        None, "e.g. crop:2,hflip,cutout:8 or none",
        default_text=lambda: f"the model's recipe: {_recipe('augment')}, the two that pay on "
        f"small images; {_mirroring()}; decoding is --image-size, --resize and --center-crop "
        "(0.1's resize:N and center-crop:N here are still read)")
    mean: list[float] | None = _data(None, "normalization mean per channel, e.g. 0.49,0.48,0.45",
                                     default_text="computed from the training split")
    std: list[float] | None = _data(None, "normalization std per channel",
                                    default_text="computed from the training split",
                                    bounds=POSITIVE)
    batch_size: int | None = _data(
        None, "training batch size; an explicit one the data cannot fill is an error",
        default_text="256 (large enough to keep 2 CPU cores busy, small enough to generalise), "
        "or for a small training set the largest power of two that gives at least "
        "8 steps per epoch", bounds=POSITIVE)
    drop_last: bool = _data(True, "drop a last partial batch: a batch of one breaks BatchNorm "
                            "and skews the epoch")
    strict: bool = _data(False, "stop on any unusable image file, naming it")
    download: bool = _data(True, "download a missing public dataset (--no-download never "
                           "touches the network)")
    # --- model ----------------------------------------------------------------------------
    model: str | None = _model(None, _models,
                               default_text=lambda: f"{_default_model()} with its recipe,"
                               " the fastest to a good accuracy (BENCHMARKS.md B3); for a folder "
                               "of photos, efficientnet_lite2 --pretrained when descend[pretrained]"
                               " is installed (descend/training/planning/photos.py); with "
                               "--init, the checkpoint's model")
    model_args: dict[str, Any] = _model({}, "model argument, e.g. widths=[32,64,128] "
                                        "dropout=0.1", flag="--model-arg", metavar="KEY=VALUE")
    init: str | None = _model(
        None, "start from this descend run or checkpoint: its weights, a new head where the "
        "classes differ, and (unless given) its model, input size and normalization",
        metavar="RUN_OR_CKPT")
    pretrained: bool = _model(
        False, lambda: "start from ImageNet weights, with their input size and normalization: "
        f"{_weights()}")
    weights: str | None = _model(None, "start from this weights file (a state dict: .pth, .pt "
                                 "or .safetensors), with a new head where the classes differ",
                                 metavar="FILE")
    freeze_epochs: int = _model(0, "with --init, --pretrained or --weights: train only the new "
                                "head for this many epochs, then everything",
                                bounds=NON_NEGATIVE)
    backbone_lr_scale: float = _model(
        1.0, "with --init, --pretrained or --weights: the loaded layers learn at this multiple "
        "of the learning rate and the new head at the rate itself (discriminative learning "
        "rates, as fastai's lr slice); 1 trains every layer at one rate",
        bounds=POSITIVE)
    cached_head: bool | None = _model(
        None, "with --pretrained, --init or --weights: first fit the new head on the frozen "
        "backbone's features, computed once (a logistic regression, its L2 strength by 5-fold "
        "cross-validation on the training split; seconds on a CPU, "
        "descend/training/fitting/features.py); --epochs then fine-tunes everything after it, "
        "--epochs 0 keeps the head alone",
        default_text="on for the efficientnet_lite models started from --pretrained")
    # --- optimization ---------------------------------------------------------------------
    optimizer: str = _model("nesterov", "optimizer by name, e.g. sgd, adam (a wrong name lists "
                            "them all); SGD with Nesterov momentum is the CIFAR-10 standard")
    lr: float | str | None = _model(
        None, "(peak) learning rate; auto runs descend lr-find first and trains at its "
        "suggestion",
        default_text=lambda: "P x batch size / 256, P the model recipe's one-cycle peak at "
        f"batch 256 ({_recipe('peak_lr')}); a smaller batch takes proportionally smaller "
        "steps (the linear scaling rule)", bounds=POSITIVE, words=("auto",))
    partner_lr_scale: float = _model(
        1.0, "with --optimizer muon: the parameters Muon leaves to Nesterov momentum (biases, "
        "norm shifts, the classifier head) learn at this multiple of --lr, as airbench gives "
        "them rates of their own; 1 trains both at --lr", bounds=POSITIVE)
    momentum: float = _model(0.9, "momentum / beta1; at 0.9, --schedule onecycle cycles it "
                             "0.95 -> 0.85 -> 0.95 (as torch's OneCycleLR), any other value "
                             "is held", bounds=FRACTION)
    weight_decay: float | None = _model(
        None, "L2 (AdamW and Muon decouple it)",
        default_text=lambda: f"the model's recipe: {_recipe('weight_decay')}",
        bounds=NON_NEGATIVE)
    label_smoothing: float | None = _model(
        None, "cheap regularisation, worth ~1% on CIFAR-10",
        default_text=lambda: f"the model's recipe: {_recipe('label_smoothing')}",
        bounds=FRACTION)
    ema_decay: float = _model(0.0, "keep an EMA of the weights with this decay (e.g. 0.999); "
                              "validation and best.pt use the averaged weights; 0 is off",
                              bounds=FRACTION)
    epochs: int | None = _model(
        None, "epochs to train (--time-budget plans them instead)",
        default_text="8, or for a small dataset enough to train 500 steps (at most 2 minutes "
        "of them by a timed probe; descend/training/planning/plan.py); 0 after a --cached-head "
        "(its recipe for photos)", bounds=NON_NEGATIVE)
    epoch_steps: int | None = _model(
        None, "train only this many batches of each epoch (--time-budget sets it when the "
        "budget is shorter than one epoch)", default_text="every batch", bounds=POSITIVE)
    schedule: str = _model("onecycle", "constant, step, multistep, exponential, cosine, "
                           "linear, onecycle, plateau; one-cycle (warm up, then anneal) is the "
                           "fastest schedule for short runs")
    warmup_epochs: float = _model(1.0, "cosine and linear warm-up length (onecycle warms up by "
                                  "itself)", bounds=NON_NEGATIVE)
    step_size: int = _model(10, "step schedule: epochs between decays", bounds=POSITIVE)
    gamma: float = _model(0.1, "decay factor of step/multistep/exponential/plateau",
                          bounds=POSITIVE)
    milestones: list[int] = _model([10, 15], "multistep epochs, e.g. 10,15", bounds=Bounds(1))
    plateau_patience: int = _model(3, "reduce-on-plateau: epochs without improvement",
                                   bounds=POSITIVE)
    # --- early stopping and checkpoints ---------------------------------------------------
    monitor: str = _stop("val_acc", "val_acc or val_loss: the metric that picks best.pt and "
                         "drives early stopping", choices=("val_acc", "val_loss"))
    early_stop: int = _stop(0, "stop after this many epochs without improvement; 0 is off",
                            metavar="PATIENCE", bounds=NON_NEGATIVE)
    min_delta: float = _stop(0.0, "smallest change that counts as improvement",
                             bounds=NON_NEGATIVE)
    val_every: int | None = _stop(
        None, "validate every N epochs (the last epoch always); 0: the last epoch alone",
        metavar="N", default_text="1; with --time-budget, 0: a validation pass is time the "
        "budget cannot train (about 11% of a 5-minute CIFAR-10 budget, BENCHMARKS.md B3)",
        bounds=NON_NEGATIVE)
    time_budget: str | None = _stop(
        None, "plan the epochs (and the schedule's length) to finish training within this "
        "time, e.g. 90s, 5m, 1h30m; timed from the first probe to the end of the last "
        "validation: loading the data, --lr auto's sweep and the test pass are extra",
        metavar="DURATION")
    # --- machine --------------------------------------------------------------------------
    seed: int = _machine(0, "seed of every random stream (order, augmentation, initialisation)")
    deterministic: bool = _machine(False, "bit-exact reruns at some cost in speed")
    device: str = _machine("auto", "auto, cpu, cuda[:N] or mps; auto picks cuda, then mps, "
                           "then cpu")
    amp: bool = _machine(True, "the fast precision for the device: bfloat16 autocast on CUDA, "
                         "and on a CPU with native bfloat16 (AMX or AVX-512 BF16) where a few "
                         "timed steps show it pays; float32 elsewhere")
    channels_last: bool = _machine(True, "channels-last memory: 1.3-1.6x faster convolutions "
                                   "on CPU and GPU alike")
    compile: bool = _machine(False, "torch.compile the model (slow start, faster steps on GPU)")
    threads: int | None = _machine(
        None, "CPU threads to train with", metavar="N",
        default_text="torch's (one per core), or half of them where a few timed steps show "
        "other programs busy on the cores (2.5x faster then, BENCHMARKS.md B10)",
        bounds=POSITIVE)
    reprobe: bool = _machine(
        False, "time the probes again (widths, precision, threads, the steps that fit) instead "
        "of planning from the figures an earlier run measured on this machine, and remember the "
        "new ones (probes.json in the cache dir; descend/training/planning/remembered.py)")
    eval_batch_size: int = _machine(256, "batch size of validation and test passes (256: on a "
                                    "2-core CPU, fastres evaluated 2x faster than at 1024, "
                                    "whose activations overflow the caches)",
                                    bounds=POSITIVE)
    # --- output ---------------------------------------------------------------------------
    out: str | None = _output(None, "run folder", default_text="runs/<data>-<model>-<time>")
    overwrite: bool = _output(False, "replace a run already in --out")
    progress: bool = _output(True, "progress bars")
    tensorboard: bool = _output(False, "also log to RUN/tensorboard")

    def validate(self) -> TrainConfig:
        """Check every value and the combinations; a `ConfigError` names the flag to fix."""
        self._check_numbers()
        self._check_choices()
        return self

    def _check_numbers(self) -> None:
        """Each setting against its own declaration: whole numbers, `Bounds`, ``choices``."""
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), flag_name(f.name)
            if value is None or (isinstance(value, str) and value in f.metadata["words"]):
                continue
            items = value if isinstance(value, list) else [value]
            kind = field_types()[f.name]
            if (kind is int or kind == list[int]) and not all(_whole(v) for v in items):
                raise ConfigError(f"{flag} must be a whole number, got {value!r}")
            bounds: Bounds | None = f.metadata.get("bounds")
            if bounds is not None and not all(_number(v) and bounds.admit(v) for v in items):
                raise ConfigError(f"{flag} must be {bounds.describe()}, got {value!r}")
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        if self.schedule in ("step", "multistep", "exponential", "plateau") and self.gamma >= 1:
            raise ConfigError(f"--gamma {self.gamma} would not decay the {self.schedule} "
                              "schedule: give a factor below 1, e.g. 0.1")

    def _check_choices(self) -> None:
        if self.early_stop and self.val_every is not None and self.val_every != 1:
            raise ConfigError("--early-stop counts epochs without improvement, so it needs a "
                              "validation every epoch: drop --val-every or give --val-every 1")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("--mean and --std go together: give both, or neither to compute "
                              "them from the training split")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith(
            "cuda:"
        ):
            raise ConfigError(f"--device must be auto, cpu, cuda[:N] or mps, got {self.device!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, list) or not v):
                raise ConfigError(f"{name} must be a list of per-channel numbers")
        sources = [f for f, on in (("--init", self.init), ("--pretrained", self.pretrained),
                                   ("--weights", self.weights)) if on]
        if len(sources) > 1:
            raise ConfigError(f"{' and '.join(sources)}: choose one place to start from")
        if self.pretrained and not _has_imagenet_weights(self.model):
            raise ConfigError("--pretrained starts from ImageNet weights: add --model "
                              "efficientnet_lite0 (or 1, 2; offline, descend[pretrained]) or "
                              "tv:NAME (torchvision's), or start from a descend run with --init")
        if self.cached_head and not sources:
            raise ConfigError("--cached-head fits a new head on weights from elsewhere: add "
                              "--pretrained, --init or --weights")
        if self.epochs == 0 and not (self.cached_head or (self.cached_head is None and sources)):
            raise ConfigError("--epochs 0 trains nothing: it is for --cached-head (the head "
                              "alone); give 1 or more")
        if self.backbone_lr_scale != 1 and not sources:
            raise ConfigError("--backbone-lr-scale slows the layers loaded from elsewhere: add "
                              "--init, --pretrained or --weights")
        if self.partner_lr_scale != 1 and self.optimizer != "muon":
            raise ConfigError(f"--partner-lr-scale sets the rate of Muon's Nesterov partner; "
                              f"--optimizer {self.optimizer} has none: add --optimizer muon or "
                              "drop --partner-lr-scale")
        if self.freeze_epochs and not sources:
            raise ConfigError("--freeze-epochs trains a new head on weights from elsewhere: add "
                              "--init, --pretrained or --weights")

    def __post_init__(self) -> None:
        """descend 0.1 spelled the decode geometry inside ``--augment`` (``resize:R``,
        ``center-crop:C``): where a user still types it (a flag, a Python argument, a config
        file), it moves to ``--resize`` / ``--center-crop`` here. The files 0.1 wrote are
        upgraded when they are read (`descend.runtime.migrate`)."""
        augment, old = split_geometry(self.augment)
        if old:
            geometry = self.geometry().merged(**old)
            # Frozen: the one place a config is changed after it is made, while it is made.
            object.__setattr__(self, "augment", augment)
            object.__setattr__(self, "resize", geometry.resize)
            object.__setattr__(self, "center_crop", geometry.center_crop)

    def geometry(self) -> Geometry:
        """How the run decodes its images."""
        return Geometry(self.image_size, self.resize, self.center_crop)

    def data_options(self, **changes: Any) -> DataOptions:
        """What the dataset needs of this config, as one typed value (`DataOptions.changed`
        takes ``changes`` by name)."""
        return DataOptions(geometry=self.geometry(), val_fraction=self.val_fraction,
                           seed=self.seed, download=self.download, strict=self.strict,
                           progress=self.progress).changed(**changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Settings by name (``-`` or ``_``), each converted to its field's type by `convert`."""
        clean = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(clean) - cls.field_names())
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; valid settings are: "
                f"{', '.join(sorted(cls.field_names()))}"
            )
        return cls(**{k: convert(k, v, source) for k, v in clean.items()})

    def updated(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``5m``, ``1.5h``, ``1h30m`` or a bare number of seconds."""
    t = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ConfigError(f"--time-budget {text!r} is not a duration: write e.g. 90s, 5m, "
                              "1h or 1h30m")
        seconds = sum(float(n) * DURATION_UNITS[u] for n, u in parts)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(f"--time-budget must be a positive duration, got {text!r}")
    return seconds


def flag_name(name: str) -> str:
    """The command-line flag of a setting: ``batch_size`` -> ``--batch-size``."""
    meta = _FIELDS[name].metadata if name in _FIELDS else {}
    return meta.get("flag") or "--" + name.replace("_", "-")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


@functools.cache
def field_types() -> dict[str, Any]:
    """Each setting's type with None taken out (``int | None`` -> ``int``)."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: _without_none(hint) for name, hint in hints.items()}


def optional(name: str) -> bool:
    return type(None) in typing.get_args(typing.get_type_hints(TrainConfig)[name])


def _without_none(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return args[0]
    return hint


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def convert(name: str, value: Any, source: str = "config") -> Any:
    """``value`` (from a flag's text or a config file) as setting ``name``'s type.

    The same rules serve flags and files: numbers may be given as text (YAML reads ``5e-4`` as a
    string), a whole-number setting takes a whole float (``8.0``) but not ``8.5``, lists may be
    comma-separated text, and True/False are the only booleans a number setting refuses.
    """
    if value is None and optional(name):
        return None
    if isinstance(value, str) and value.strip().lower() in _FIELDS[name].metadata["words"]:
        return value.strip().lower()
    kind = field_types()[name]
    try:
        return _convert(kind, value)
    except (ValueError, TypeError):
        raise ConfigError(f"{source}: {flag_name(name)} must be {_describe(kind)}, got "
                          f"{value!r}") from None


def _convert(kind: Any, value: Any) -> Any:
    if kind is bool:
        return _to_bool(value)
    if kind is int:
        return _to_int(value)
    if kind is float:
        return _to_float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    if typing.get_origin(kind) is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(value)
        return [_convert(typing.get_args(kind)[0], v) for v in items]
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise ValueError(value)
        return dict(value)
    raise TypeError(f"no conversion for {kind!r}")  # a new field type needs a rule here


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return f"a comma-separated list of {'whole numbers' if item is int else 'numbers'}"
    if typing.get_origin(kind) is dict:
        return "a table of KEY = VALUE settings"
    return {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "text")


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and _number(value) and float(value).is_integer()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return float(value)


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


def _has_imagenet_weights(model: str | None) -> bool:
    from descend.models.registry import has_imagenet_weights

    return has_imagenet_weights(model)
