"""``descend train``: every TrainConfig setting as a flag; a config file fills the rest."""

from __future__ import annotations

import argparse
import json
from typing import Any

from descend.cli.flags import add_config_flags, config_values
from descend.config import TrainConfig, read_config_file
from descend.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a classifier",
                       description="Train an image classifier. With no flags: the fast default "
                       "recipe on CIFAR-10 (or the built-in sample when CIFAR-10 is absent).")
    add_config_flags(p)
    g = p.add_argument_group("run")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    g.add_argument("--config", help="TOML, YAML or JSON file of settings; flags override it")
    g.add_argument("--json", action="store_true", help="print the result as JSON at the end")


def run(args: argparse.Namespace) -> int:
    from descend.training.trainer import train

    given = config_values(args)
    if args.resume:
        if args.config:
            raise ConfigError("--resume takes its settings from the run; drop --config")
        result = train(resume=args.resume, **given)
    else:
        values: dict[str, Any] = read_config_file(args.config) if args.config else {}
        cfg = TrainConfig.from_dict({**values, **given}, source=args.config or "flags")
        result = train(cfg)
    if args.json:
        print(json.dumps({
            "run_dir": str(result.run_dir), "data": result.data_name,
            "best_epoch": result.best_epoch, "best_metric": result.best_metric,
            "test_accuracy": result.test_acc, "history": result.history,
        }, indent=2))
    return 0
