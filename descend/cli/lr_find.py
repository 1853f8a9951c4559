"""``descend lr-find``: the learning-rate range test on your model and data, for one optimizer
or several on one plot (``--optimizer sgd,nesterov,adam``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from descend.cli.flags import add_config_flags, config_values

# Train settings a sweep decides itself (its length, a constant schedule, no checkpoints).
NOT_FOR_SWEEP = ("out", "overwrite", "epochs", "epoch_steps", "time_budget", "val_every",
                 "early_stop", "monitor", "min_delta", "schedule", "warmup_epochs",
                 "step_size", "gamma", "milestones", "plateau_patience", "ema_decay",
                 "tensorboard", "lr")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "lr-find", help="find a learning rate: the loss against an exponentially growing rate",
        description="The learning-rate range test (Smith 2017): train a copy of the model for "
        "--steps steps while the rate grows from --start to --end, plot the smoothed loss "
        "against it, and suggest a tenth of the rate at its lowest point. Every train setting "
        "applies; --optimizer takes a comma-separated list to compare optimizers on one plot.")
    g = p.add_argument_group("sweep")
    g.add_argument("--steps", type=int, default=200, help="steps of the sweep (default "
                   "%(default)s; it stops early when the loss diverges)")
    g.add_argument("--start", type=float, default=1e-6, help="first rate (default %(default)g)")
    g.add_argument("--end", type=float, default=10.0, help="last rate (default %(default)g)")
    g.add_argument("--plot", default="lr_find.png", help="the PNG to write (default "
                   "%(default)s)")
    g.add_argument("--json", action="store_true", help="print the sweeps as JSON")
    add_config_flags(p, exclude=NOT_FOR_SWEEP)


def run(args: argparse.Namespace) -> int:
    from descend.config import TrainConfig
    from descend.experiments.lr_find import lr_find
    from descend.reports.lr_plot import plot_lr_find

    values = config_values(args)
    names = [n.strip() for n in str(values.pop("optimizer", "nesterov")).split(",") if n.strip()]
    findings = []
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        for name in names:
            cfg = TrainConfig.from_dict({**values, "optimizer": name}, "flags").validate()
            findings.append(lr_find(cfg, steps=args.steps, start=args.start, end=args.end))
        plot_lr_find(findings, args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=1))
    return 0
