"""``descend train``: every TrainConfig setting as a flag; a config file fills the rest."""

from __future__ import annotations

import argparse
import json
from typing import Any

from descend.config import TrainConfig, read_config_file
from descend.errors import ConfigError

S = argparse.SUPPRESS  # flags not given stay out of the namespace, so config files can fill them


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a classifier",
                       description="Train an image classifier. With no flags: the fast default "
                       "recipe on CIFAR-10 (or the built-in sample when CIFAR-10 is absent).",
                       argument_default=S)
    bool_flag = argparse.BooleanOptionalAction
    g = p.add_argument_group("data")
    g.add_argument("--data", help="mnist, fashion-mnist, cifar10, cifar10-sample or "
                   "imagefolder:PATH (default: cifar10, else the built-in sample)")
    g.add_argument("--data-root", help="where datasets live (default $DESCEND_DATA, else "
                   "~/.cache/descend/datasets)")
    g.add_argument("--cache-dir", help="where decoded caches go (default $DESCEND_CACHE, else "
                   "~/.cache/descend/cache)")
    g.add_argument("--image-size", type=int, help="side of the square training images "
                   "(default: the dataset's own, 64 for image folders)")
    g.add_argument("--val-fraction", type=float, help="hold out this share of each class for "
                   "validation (default: the test split; 0.2 for a flat image folder)")
    g.add_argument("--augment", help="e.g. crop:4,hflip,cutout:8 or none (default crop:4,hflip)")
    g.add_argument("--mean", type=_floats, help="normalization mean per channel, e.g. "
                   "0.49,0.48,0.45 (default: computed from the training split)")
    g.add_argument("--std", type=_floats, help="normalization std per channel")
    g.add_argument("--batch-size", type=int, help="training batch size (default 256)")
    g.add_argument("--drop-last", action=bool_flag, help="drop a last partial batch (default on)")
    g.add_argument("--strict", action=bool_flag, help="stop on any unusable image file")
    g.add_argument("--download", action=bool_flag, help="download a missing public dataset "
                   "(default on; --no-download never touches the network)")
    g = p.add_argument_group("model and optimization")
    g.add_argument("--model", help="mlp, cnn or tv:NAME (default cnn)")
    g.add_argument("--model-arg", dest="model_args", type=_model_arg, action="append",
                   metavar="KEY=VALUE", help="model argument, e.g. widths=[32,64,128] dropout=0.1")
    g.add_argument("--optimizer", help="sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw "
                   "(default nesterov)")
    g.add_argument("--lr", type=float, help="(peak) learning rate (default 0.2)")
    g.add_argument("--momentum", type=float, help="momentum / beta1 (default 0.9)")
    g.add_argument("--weight-decay", type=float, help="default 5e-4")
    g.add_argument("--label-smoothing", type=float, help="default 0.1")
    g.add_argument("--ema-decay", type=float, help="keep an EMA of the weights with this decay "
                   "(e.g. 0.999); validation and best.pt use the averaged weights (default 0: off)")
    g.add_argument("--epochs", type=int, help="default 8")
    g.add_argument("--schedule", help="constant, step, multistep, exponential, cosine, onecycle, "
                   "plateau (default onecycle)")
    g.add_argument("--warmup-epochs", type=float, help="cosine warm-up length (default 1)")
    g.add_argument("--step-size", type=int, help="step schedule period in epochs")
    g.add_argument("--gamma", type=float, help="decay factor of step/multistep/exponential/plateau")
    g.add_argument("--milestones", type=_ints, help="multistep epochs, e.g. 10,15")
    g.add_argument("--plateau-patience", type=int)
    g = p.add_argument_group("early stopping")
    g.add_argument("--monitor", help="val_acc or val_loss: picks best.pt (default val_acc)")
    g.add_argument("--early-stop", type=int, metavar="PATIENCE",
                   help="stop after this many epochs without improvement (default 0: off)")
    g.add_argument("--min-delta", type=float, help="smallest change that counts as improvement")
    g = p.add_argument_group("machine")
    g.add_argument("--seed", type=int)
    g.add_argument("--deterministic", action=bool_flag, help="bit-exact reruns")
    g.add_argument("--device", help="auto, cpu, cuda[:N] or mps (default auto)")
    g.add_argument("--amp", action=bool_flag, help="bfloat16 autocast on CUDA (default on)")
    g.add_argument("--channels-last", action=bool_flag, help="default on")
    g.add_argument("--compile", action=bool_flag, help="torch.compile the model")
    g.add_argument("--eval-batch-size", type=int)
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run folder (default runs/<data>-<model>-<time>)")
    g.add_argument("--overwrite", action=bool_flag, help="replace a run already in --out")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    g.add_argument("--progress", action=bool_flag, help="progress bars (default on)")
    g.add_argument("--tensorboard", action=bool_flag, help="also log to RUN/tensorboard")
    g.add_argument("--config", help="TOML, YAML or JSON file of settings; flags override it")
    p.add_argument("--json", action="store_true", help="print the result as JSON at the end")


def run(args: argparse.Namespace) -> int:
    from descend.training.trainer import train

    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume",
                                                              "json", "func")}
    if "model_args" in given:
        given["model_args"] = dict(given["model_args"])
    resume = getattr(args, "resume", None)
    if resume:
        if getattr(args, "config", None):
            raise ConfigError("--resume takes its settings from the run; drop --config")
        result = train(resume=resume, **given)
    else:
        values: dict[str, Any] = {}
        if getattr(args, "config", None):
            values = read_config_file(args.config)
        cfg = TrainConfig.from_dict({**values, **given}, source=getattr(args, "config", "flags"))
        result = train(cfg)
    if getattr(args, "json", False):
        print(json.dumps({
            "run_dir": str(result.run_dir), "data": result.data_name,
            "best_epoch": result.best_epoch, "best_metric": result.best_metric,
            "test_accuracy": result.test_acc, "history": result.history,
        }, indent=2))
    return 0
