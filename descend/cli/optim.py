"""``descend optim paths`` and ``descend optim compare``: seeing the optimizers work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from descend.cli.flags import add_config_flags, config_values

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
                            "Beale, a saddle and an ill-conditioned quadratic; a PNG of the paths "
                            "over contours and a table of where each ended.")
    paths.add_argument("--optimizers", help="comma-separated names (default: all)")
    paths.add_argument("--functions", help="comma-separated: rosenbrock, beale, saddle, quadratic")
    paths.add_argument("--steps", type=int, default=500)
    paths.add_argument("--out", default="paths.png")
    compare = osub.add_parser("compare", help="train one model once per optimizer",
                              description="Train the same model on the same data once per "
                              "optimizer (same seed, constant lr unless --schedule) and draw "
                              "the smoothed training loss of every step beside the validation "
                              "accuracy after each epoch. Every `descend train` setting applies "
                              "to all the runs.")
    compare.add_argument("--optimizers", default="sgd,momentum,nesterov,adagrad,rmsprop,adam",
                         help="comma-separated names (default %(default)s)")
    compare.add_argument("--lr", help="one lr for all, or per optimizer: sgd=0.1,adam=1e-3 "
                         "(default: each optimizer's own comparison lr)")
    compare.add_argument("--out", default="runs/compare", help="folder for the runs, PNG, table")
    compare.add_argument("--plot", help="the PNG to write (default OUT/compare.png)")
    compare.add_argument("--lr-find", action="store_true",
                         help="also run descend lr-find for each optimizer on the same model and "
                         "data, and draw its curves beside the training curves")
    add_config_flags(compare, exclude=("optimizer", "lr", "out", "overwrite"),
                     defaults=COMPARE_DEFAULTS)


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
    from descend.errors import ConfigError

    if args.optim_command == "paths":
        from descend.experiments.paths import format_paths_table, plot_paths, run_paths

        try:
            results = run_paths(_names(args.optimizers), _names(args.functions), args.steps)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        print(format_paths_table(results))
        print(f"wrote {plot_paths(results, Path(args.out))}")
        return 0

    from descend.config import TrainConfig
    from descend.runtime.device import keep_freed_memory

    keep_freed_memory()  # as `descend train` does (BENCHMARKS.md, B9)
    from descend.experiments.compare import compare_optimizers, format_compare_table, plot_compare
    from descend.experiments.lr_find import lr_find
    from descend.optim import OPTIMIZERS
    from descend.training.fitting.callbacks import StepLosses
    from descend.training.trainer import train

    names = _names(args.optimizers) or []
    for n in names:
        OPTIMIZERS.get(n)  # unknown names fail before any training
    lrs = _lrs(args.lr, names)
    out = Path(args.out)

    settings = config_values(args, COMPARE_DEFAULTS)

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

    runs = compare_optimizers(one, names, lrs=lrs)
    findings = [lr_find(config(name).validate()) for name in names] if args.lr_find else []
    table = format_compare_table(runs)
    print(table)
    (out / "compare.txt").write_text(table + "\n", encoding="utf-8")
    plot = plot_compare(runs, Path(args.plot) if args.plot else out / "compare.png", findings,
                        settings.get("label_smoothing") or 0.0)
    print(f"wrote {plot} and {out / 'compare.txt'}")
    return 0 if all(r.error is None for r in runs) else 1
