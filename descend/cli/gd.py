"""``descend gd``: the seed's batch / stochastic / mini-batch gradient descent experiment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("gd", help="compare batch, stochastic and mini-batch gradient descent",
                       description="The seed's experiment (SPEC §1): nn.Linear(10, 1), MSE, plain "
                       "SGD, on identical data and initial weights for BGD, SGD and MBGD.")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--features", type=int, default=10)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32, help="the mini-batch size (MBGD)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-targets", action="store_true",
                   help="the seed's random y (nothing to learn) instead of y = X w* + b* + noise")
    p.add_argument("--out", default="gd.png", help="where to write the plot (default gd.png)")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.experiments.gd import format_gd_table, plot_gd, run_gd_modes

    for name in ("samples", "features", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}")
    results = run_gd_modes(args.samples, args.features, args.epochs, args.lr,
                           {"BGD": None, "SGD": 1, "MBGD": args.batch_size}, args.seed,
                           args.random_targets)
    print(format_gd_table(results))
    print(f"wrote {plot_gd(results, Path(args.out))}")
    return 0
