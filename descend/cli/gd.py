"""``descend gd``: the seed's batch / stochastic / mini-batch gradient descent experiment."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from descend.cli import common

FIGURE = "gd.png"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("gd", help="compare batch, stochastic and mini-batch gradient descent",
                       description="The seed's first experiment (its gradient-descent chapter): "
                       "nn.Linear(10, 1), MSE, plain "
                       "SGD, on identical data and initial weights for BGD, SGD and MBGD; a table "
                       f"of where each ended and {FIGURE}, the loss against updates and time.")
    p.add_argument("--samples", type=int, default=1000,
                   help="training samples; BGD's batch (default: %(default)s)")
    p.add_argument("--features", type=int, default=10,
                   help="inputs of the linear model (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=20,
                   help="passes over the samples, the same for every mode (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.01,
                   help="plain SGD's learning rate, the same for every mode "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="the mini-batch size (MBGD) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, the initial weights and the sample order "
                   "(default: %(default)s)")
    p.add_argument("--random-targets", action="store_true",
                   help="the seed's random y (nothing to learn) instead of y = X w* + b* + noise "
                   "(default: off)")
    common.add_out(p, FIGURE, "runs/gd-<date>-<time>")
    common.add_json(p, "each mode's result (its loss history too)")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.experiments.gd import format_gd_table, plot_gd, run_gd_modes

    for name in ("samples", "features", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}")
    folder, name, old = common.figure_out(args.out, "gd", FIGURE)
    common.claim_out(folder, [name], args.overwrite or old)
    results = run_gd_modes(args.samples, args.features, args.epochs, args.lr,
                           {"BGD": None, "SGD": 1, "MBGD": args.batch_size}, args.seed,
                           args.random_targets)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        print(format_gd_table(results))
    plot_gd(results, folder / name)
    if args.json:
        common.print_json([r.to_dict() for r in results])
    common.say_written(folder, [name], args.json)
    return 0
