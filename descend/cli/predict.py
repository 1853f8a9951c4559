"""``descend predict CKPT FILES/DIRS/GLOBS``: top-k classes with probabilities.

An unreadable file is reported and makes the exit status 1; every other file is still predicted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict the class of images",
                       description="Predict images (files, folders, globs) with a checkpoint.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.evaluation.predict import Classifier, expand_inputs, predict_files

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    classifier = Classifier.load(args.checkpoint, args.device)
    files, errors = expand_inputs(args.inputs)
    predictions, bad = predict_files(classifier, files, args.top_k)
    errors += bad
    if args.json:
        print(json.dumps({"predictions": [p.to_dict() for p in predictions], "errors": errors},
                         ensure_ascii=False))
    else:
        for p in predictions:
            print(f"{p.source}: " + ", ".join(f"{c} {prob:.3f}" for c, prob in p.top))
        for e in errors:
            print(f"{e['path']}: ERROR {e['error']}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) could not be predicted", file=sys.stderr)
    return 1 if errors else 0
