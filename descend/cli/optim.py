"""``descend optim paths`` and ``descend optim compare``: seeing the optimizers work."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from descend.cli import common
from descend.cli.flags import add_config_flags, config_values

PATHS_FIGURE = "paths.png"
COMPARE_FIGURE, COMPARE_TABLE = "compare.png", "compare.txt"
COMPARE_OPTIMIZERS = "sgd,momentum,nesterov,adagrad,rmsprop,adam"

# Where a comparison differs from `descend train`: small, quick, and with nothing (augmentation,
# a schedule) that would blur the difference between the optimizers. Six "epochs" of 50 steps:
# 300 steps draw the whole fall of the loss and six validations a curve of accuracy, in about
# 20 s per optimizer for the cnn on a 2-core CPU (README). No label smoothing: the curves are
# then the plain cross-entropy, which falls towards 0 and compares with the validation loss;
# smoothing 0.1 holds it above 0.5 on 10 classes, where the optimizers look alike.
# The model is named so that a folder of photos is compared on fastres too, not given the
# head on cached features that `descend train` starts photos with (it takes no optimizer step).
COMPARE_DEFAULTS = {"data": "mnist", "model": "fastres", "epochs": 6, "epoch_steps": 50,
                    "batch_size": 128, "schedule": "constant", "augment": "none",
                    "label_smoothing": 0.0}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("optim", help="see the optimizers at work (paths, compare)")
    osub = p.add_subparsers(dest="optim_command", metavar="ACTION", required=True)
    paths = osub.add_parser("paths", help="optimizer paths over 2-D test functions",
                            description="Every optimizer from the same start on Rosenbrock, "
                            "Beale, a saddle and an ill-conditioned quadratic; "
                            f"{PATHS_FIGURE}, the paths over contours, and a table of where each "
                            "ended.")
    add_optimizer(paths, "every registered one", old_spelling=True)
    paths.add_argument("--functions", metavar="NAMES",
                       help="comma-separated: rosenbrock, beale, saddle, quadratic (default: all)")
    paths.add_argument("--steps", type=int, default=500,
                       help="steps each optimizer takes on each function (default: %(default)s)")
    common.add_out(paths, PATHS_FIGURE, "runs/optim-paths-<date>-<time>")
    common.add_json(paths, "where each optimizer ended on each function")
    compare = osub.add_parser("compare", help="train one model once per optimizer",
                              description="Train the same model on the same data once per "
                              "optimizer (same seed, constant lr unless --schedule) and draw "
                              "the smoothed training loss of every step beside the validation "
                              "accuracy after each epoch. Every `descend train` setting applies "
                              f"to all the runs. --out holds {COMPARE_FIGURE}, {COMPARE_TABLE} "
                              "and one run folder per optimizer.")
    add_optimizer(compare, COMPARE_OPTIMIZERS, old_spelling=True)
    compare.add_argument("--lr", help="one lr for all, or per optimizer: sgd=0.1,adam=1e-3 "
                         "(default: each optimizer's own comparison lr)")
    common.add_out(compare, f"{COMPARE_FIGURE}, {COMPARE_TABLE} and a run folder per optimizer",
                   "runs/optim-compare-<date>-<time>")
    compare.add_argument("--plot", type=Path, metavar="FILE",
                         help=f"deprecated: write the figure here instead of OUT/{COMPARE_FIGURE} "
                         "(default: off)")
    compare.add_argument("--lr-find", action="store_true",
                         help="also run descend lr-find for each optimizer on the same model and "
                         "data, and draw its curves beside the training curves (default: off)")
    common.add_json(compare, "each optimizer's epochs")
    add_config_flags(compare, exclude=("optimizer", "lr", "out", "overwrite"),
                     defaults=COMPARE_DEFAULTS)


def add_optimizer(parser: argparse.ArgumentParser, default: str, *,
                  old_spelling: bool = False) -> None:
    """``--optimizer NAME[,NAME...]``, spelt alike by lr-find, optim paths and optim compare;
    ``old_spelling``: optim's 0.x ``--optimizers`` too, with a `common.deprecated` note."""
    parser.add_argument("--optimizer", metavar="NAMES",
                        help="an optimizer by name, or several separated by commas, e.g. "
                        f"sgd,adam (a wrong name lists them all) (default: {default})")
    if old_spelling:
        parser.add_argument("--optimizers", dest="old_optimizers", metavar="NAMES",
                            help="deprecated spelling of --optimizer (default: off)")


def optimizer_names(args: argparse.Namespace, default: str | None) -> list[str] | None:
    """The names ``--optimizer`` (or the old ``--optimizers``) gave, else ``default``'s; each
    is checked against the registry before anything runs (a wrong one lists them all)."""
    from descend.optim import OPTIMIZERS

    text = args.optimizer
    if getattr(args, "old_optimizers", None) is not None:
        common.deprecated("--optimizers", "--optimizer")
        text = text or args.old_optimizers
    names = _names(text or default)
    for name in names or ():
        OPTIMIZERS.get(name)
    return names


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _lrs(text: str | None, names: list[str]) -> dict[str, float]:
    from descend.errors import ConfigError
    from descend.optim import compare_lr

    lrs = {n: compare_lr(n) for n in names}
    if not text:
        return lrs
    try:
        if "=" not in text:
            return dict.fromkeys(names, float(text))
        for item in text.split(","):
            name, _, value = item.partition("=")
            lrs[name.strip()] = float(value)
    except ValueError:
        raise ConfigError(f"--lr {text!r}: give a number or name=number pairs") from None
    return lrs


def run(args: argparse.Namespace) -> int:
    if args.optim_command == "paths":
        return _paths(args)
    return _compare(args)


def _paths(args: argparse.Namespace) -> int:
    from descend.experiments.paths import format_paths_table, plot_paths, run_paths

    if args.steps < 1:
        from descend.errors import ConfigError

        raise ConfigError(f"--steps must be at least 1, got {args.steps}")
    folder, figure, old = common.figure_out(args.out, "optim-paths", PATHS_FIGURE)
    results = run_paths(optimizer_names(args, None), _names(args.functions), args.steps)
    common.claim_out(folder, [figure], args.overwrite or old)
    if args.json:
        common.print_json([r.to_dict() for r in results])
    else:
        print(format_paths_table(results))
    plot_paths(results, folder / figure)
    common.say_written(folder, [figure], args.json)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from descend.config import TrainConfig
    from descend.runtime.device import keep_freed_memory

    keep_freed_memory()  # as `descend train` does (BENCHMARKS.md, B9)
    from descend.experiments.compare import compare_optimizers, format_compare_table, plot_compare
    from descend.experiments.lr_find import lr_find
    from descend.training.fitting.callbacks import StepLosses
    from descend.training.trainer import train

    names = optimizer_names(args, COMPARE_OPTIMIZERS) or []
    lrs = _lrs(args.lr, names)
    if args.plot is not None:
        common.deprecated("--plot FILE", f"--out DIR (the figure is DIR/{COMPARE_FIGURE})")
    out = args.out if args.out is not None else common.default_out("optim-compare")
    figure = args.plot if args.plot is not None else out / COMPARE_FIGURE
    written = [COMPARE_TABLE, *([] if args.plot else [COMPARE_FIGURE])]
    common.claim_out(out, [*written, *names], args.overwrite)

    settings = {k: v for k, v in config_values(args, COMPARE_DEFAULTS).items()
                if k not in ("out", "overwrite")}  # each run's are its own, below

    def config(name: str) -> TrainConfig:
        return TrainConfig.from_dict({**settings, "optimizer": name, "lr": lrs[name],
                                      "out": str(out / name), "overwrite": True}, source="flags")

    def one(name: str) -> list[dict[str, Any]]:
        steps = StepLosses()
        history = train(config(name), callbacks=[steps]).history
        elapsed = 0.0
        rows = []
        for r, losses in zip(history, steps.epochs):  # EpochRecord wants cumulative seconds
            elapsed += r["seconds"]
            rows.append({**r, "seconds": elapsed, "step_losses": losses})
        return rows

    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        runs = compare_optimizers(one, names, lrs=lrs)
        findings = [lr_find(config(name).validate()) for name in names] if args.lr_find else []
        table = format_compare_table(runs)
        print(table)
    (out / COMPARE_TABLE).write_text(table + "\n", encoding="utf-8")
    plot_compare(runs, figure, findings, settings.get("label_smoothing") or 0.0)
    if args.json:
        common.print_json([r.to_dict() for r in runs])
    if args.plot is not None:
        print(f"wrote {figure}", file=sys.stderr if args.json else sys.stdout)
    common.say_written(out, [*written, *(f"{n}/" for n in names)], args.json)
    return 0 if all(r.error is None for r in runs) else 1
