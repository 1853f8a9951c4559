"""``descend train``: every TrainConfig setting as a flag; a config file fills the rest."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from descend.cli.flags import add_config_flags, config_values
from descend.config import TrainConfig, read_config_file
from descend.errors import ConfigError

if TYPE_CHECKING:
    from descend.training.trainer import TrainResult


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a classifier",
                       description="Train an image classifier. With no flags: the fast default "
                       "recipe on CIFAR-10 (or the built-in sample when CIFAR-10 is absent).")
    add_config_flags(p)
    g = p.add_argument_group("run")
    g.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN (or from "
                   "its last.pt); a run stopped in its first epoch starts again")
    g.add_argument("--allow-added-data", action="store_true", help="with --resume: go on with "
                   "files added to the image folder since the run began")
    g.add_argument("--config", help="TOML, YAML or JSON file of settings; flags override it")
    g.add_argument("--json", action="store_true", help="print the result as one JSON document "
                   "at the end, the log on stderr (default: the log alone)")
    g.add_argument("--print-config", action="store_true",
                   help="print the settings as resolved (flags over --config, the photo default, "
                   "the starting weights') as a JSON file that --config reads back, and stop "
                   "without training; the plan decides the rest from the data (default: train)")


def run(args: argparse.Namespace) -> int:
    if args.print_config:
        print_config(args)
        return 0
    if args.json:  # stdout carries the JSON alone; the run's log goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = _train(args)
        from descend.training.fitting.distributed import world

        if not world().is_main:  # under torchrun, rank 0 speaks for the run
            return 0
        print(json.dumps({
            "run_dir": str(result.run_dir), "data": result.data_name,
            "best_epoch": result.best_epoch, "best_metric": result.best_metric,
            "test_accuracy": result.test_acc, "history": result.history,
            "time_budget": result.budget,
        }, indent=2))
    else:
        _train(args)
    return 0


def print_config(args: argparse.Namespace) -> None:
    """``--print-config``: `resolve`'s settings, without downloading anything, and without the
    run folder and default dataset it would choose at train time (a new folder each run;
    CIFAR-10 if it can be had then, else the sample)."""
    from descend.training.planning.resolve import resolve

    given = config_values(args)
    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    if args.resume:
        request = resolve(None, args.resume, given)
    else:
        cfg = TrainConfig.from_dict({**values, **given}, source=args.config or "flags")
        request = resolve(cfg.updated(download=False), None, {})
    settings = request.cfg.to_dict()
    if not args.resume:
        settings["download"] = values.get("download", given.get("download", True))
        for name in ("out", "data"):  # a new folder each run; CIFAR-10 if it can be had then
            if not (given.get(name) or values.get(name)):
                settings[name] = None
    print(json.dumps(settings, indent=2))


def _train(args: argparse.Namespace) -> TrainResult:
    from descend.audit.decisions import training_notice
    from descend.runtime.device import keep_freed_memory
    from descend.training.trainer import train

    keep_freed_memory()  # a process-wide allocator setting: the command line's to make (B9)

    given = config_values(args)
    if args.resume:
        if args.config:
            raise ConfigError("--resume takes its settings from the run; drop --config")
        result = train(resume=args.resume, allow_added_data=args.allow_added_data,
                       folder_notice=training_notice, **given)
    else:
        values: dict[str, Any] = read_config_file(args.config) if args.config else {}
        cfg = TrainConfig.from_dict({**values, **given}, source=args.config or "flags")
        result = train(cfg, folder_notice=training_notice)
    return result
