"""``descend eval CKPT``: accuracy, per-class precision/recall, confusion matrix, mistakes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from descend.cli import common

# The files eval writes into its folder (the last only with --explain).
PLOTS = ["confusion.png", "misclassified.png", "misclassified-explained.png"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset",
                       description="Evaluate a checkpoint (default: on the data it was trained "
                       "with, test split if any). Writes confusion.png, misclassified.png and "
                       "misclassified-explained.png into RUN/eval-SPLIT/, beside the checkpoint.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--data", help="dataset to evaluate on, with the checkpoint's classes "
                   "(default: the one the run trained on)")
    p.add_argument("--split", choices=["train", "val", "test"],
                   help="which split of it (default: test if the dataset has one, else val)")
    p.add_argument("--data-root", metavar="DIR", help="where the dataset's files are "
                   "(default: where the run found them, else $DESCEND_DATA)")
    p.add_argument("--cache-dir", metavar="DIR", help="where decoded datasets are cached "
                   "(default: the run's)")
    common.add_out(p, "the plots", default="RUN/eval-SPLIT/, beside the checkpoint")
    common.add_device(p)
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="images per forward pass, as train's --eval-batch-size; only speed and "
                   "memory depend on it (default: 256)")
    common.add_json(p, "the report (accuracy, per_class, confusion_matrix, top_losses, files)")
    common.add_progress(p)
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="also write misclassified-explained.png: the mistakes under heat maps of "
                   "the evidence for the class each was given (Grad-CAM; Integrated Gradients "
                   "for mlp) (default: on)")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.evaluation.evaluate import evaluate_checkpoint

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    names = PLOTS if args.explain else PLOTS[:-1]

    def claim(folder: Path) -> Path:
        return common.claim_out(folder, names, args.overwrite)

    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.out, args.data_root,
                                 args.cache_dir, args.device, args.batch_size,
                                 progress=args.progress, explain=args.explain, claim=claim)
    written = [Path(f) for f in report["files"].values() if f]
    if args.json:
        common.print_json(report)
    else:
        print(f"{report['data']} {report['split']}: {report['images']} images, accuracy "
              f"{report['accuracy']:.4f}, loss {report['loss']:.4f}")
        print(f"{'class':<16}{'precision':>10}{'recall':>10}{'support':>9}")
        for row in report["per_class"]:
            print(f"{row['class']:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}"
                  f"{row['support']:>9}")
    common.say_written(written[0].parent, [f.name for f in written], json_out=args.json)
    return 0
