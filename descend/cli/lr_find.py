"""``descend lr-find``: the learning-rate range test on your model and data, for one optimizer
or several on one plot (``--optimizer sgd,nesterov,adam``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from descend.cli import common
from descend.cli.flags import add_config_flags, config_values
from descend.cli.optim import add_optimizer, optimizer_names
from descend.config import TrainConfig

FIGURE = "lr_find.png"
# Train settings a sweep decides itself (its length, a constant schedule, no checkpoints);
# --out here is the folder of the figure, not a run folder.
NOT_FOR_SWEEP = ("out", "overwrite", "epochs", "epoch_steps", "time_budget", "val_every",
                 "early_stop", "monitor", "min_delta", "schedule", "warmup_epochs",
                 "step_size", "gamma", "milestones", "plateau_patience", "ema_decay",
                 "tensorboard", "lr", "optimizer")
DEFAULT_OPTIMIZER: str = TrainConfig.optimizer  # train's: the rate found is for it


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "lr-find", help="find a learning rate: the loss against an exponentially growing rate",
        description="The learning-rate range test (Smith 2017): train a copy of the model for "
        "--steps steps while the rate grows from --start to --end, plot the smoothed loss "
        f"against it ({FIGURE}), and suggest a tenth of the rate at its lowest point. Every "
        "train setting applies; --optimizer takes a comma-separated list to compare optimizers "
        "on one plot.")
    add_optimizer(p, f"{DEFAULT_OPTIMIZER}, as descend train")
    g = p.add_argument_group("sweep")
    g.add_argument("--steps", type=int, default=200, help="steps of the sweep; it stops early "
                   "when the loss diverges (default: %(default)s)")
    g.add_argument("--start", type=float, default=1e-6,
                   help="first rate (default: %(default)g)")
    g.add_argument("--end", type=float, default=10.0, help="last rate (default: %(default)g)")
    common.add_out(p, FIGURE, "runs/lr-find-<date>-<time>")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help=f"deprecated: write the figure here instead of OUT/{FIGURE} "
                   "(default: off)")
    common.add_json(p, "the sweeps")
    add_config_flags(p, exclude=NOT_FOR_SWEEP)


def run(args: argparse.Namespace) -> int:
    from descend.experiments.lr_find import lr_find
    from descend.reports.lr_plot import plot_lr_find

    values = {k: v for k, v in config_values(args).items()
              if k not in ("out", "overwrite")}  # the figure's folder, not a run's
    names = optimizer_names(args, DEFAULT_OPTIMIZER) or []
    folder, figure, old = common.figure_out(args.out, "lr-find", FIGURE, old=args.plot,
                                            old_flag="--plot")
    configs = [TrainConfig.from_dict({**values, "optimizer": name}, "flags").validate()
               for name in names]
    common.claim_out(folder, [figure], args.overwrite or old)
    findings = []
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        for cfg in configs:
            findings.append(lr_find(cfg, steps=args.steps, start=args.start, end=args.end))
    plot_lr_find(findings, folder / figure)
    if args.json:
        common.print_json([f.to_dict() for f in findings])
    common.say_written(folder, [figure], args.json)
    return 0
