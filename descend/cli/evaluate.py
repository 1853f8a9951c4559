"""``descend eval CKPT``: accuracy, per-class precision/recall, confusion matrix, mistakes."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset",
                       description="Evaluate a checkpoint (default: on the data it was trained "
                       "with, test split if any). Writes confusion.png, misclassified.png and "
                       "misclassified-explained.png.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--data", help="dataset to evaluate on (default: the training dataset)")
    p.add_argument("--split", choices=["train", "val", "test"])
    p.add_argument("--data-root")
    p.add_argument("--cache-dir")
    p.add_argument("--out", help="folder for the PNGs (default: next to the checkpoint)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True,
                   help="also write misclassified-explained.png: the mistakes under heat maps of "
                   "the evidence for the class each was given (Grad-CAM; Integrated Gradients "
                   "for mlp) (default: on)")


def run(args: argparse.Namespace) -> int:
    from descend.evaluation.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.out, args.data_root,
                                 args.cache_dir, args.device, args.batch_size,
                                 progress=not args.json, explain=args.explain)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['data']} {report['split']}: {report['images']} images, accuracy "
          f"{report['accuracy']:.4f}, loss {report['loss']:.4f}")
    print(f"{'class':<16}{'precision':>10}{'recall':>10}{'support':>9}")
    for row in report["per_class"]:
        print(f"{row['class']:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}"
              f"{row['support']:>9}")
    files = report["files"]
    written = [files[k] for k in ("confusion", "misclassified", "misclassified_explained")
               if files.get(k)]
    print(f"wrote {', '.join(written[:-1])} and {written[-1]}" if len(written) > 1
          else f"wrote {written[0]}")
    return 0
