"""``descend predict CKPT FILES/DIRS/GLOBS``: top-k classes with probabilities.

An unreadable file is reported and makes the exit status 1; every other file is still predicted.
``--explain [DIR]`` also writes, per image, ``DIR/<stem>.explain.png``: the picture as the model
saw it beside its heat map for the predicted class (`descend.evaluation.explain`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# Where --explain without a folder writes: beside where the command runs, as `descend train`
# writes runs/.
EXPLAIN_DIR = "explanations"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict the class of images",
                       description="Predict images (files, folders, globs) with a checkpoint.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--explain", nargs="?", const=EXPLAIN_DIR, metavar="DIR",
                   help="write each image's heat map of the evidence for its predicted class "
                   "to DIR/<name>.explain.png (Grad-CAM; Integrated Gradients for mlp); "
                   f"DIR defaults to ./{EXPLAIN_DIR}. Put it after the images, or write "
                   "--explain=DIR")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.evaluation.predict import Classifier, expand_inputs, predict_files

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    explain = _explain_dir(args.explain)
    classifier = Classifier.load(args.checkpoint, args.device)
    files, errors = expand_inputs(args.inputs)
    if explain is not None:  # `descend predict ckpt . --explain`, run twice, skips its own PNGs
        files = [f for f in files if explain.resolve() not in f.resolve().parents]
    predictions, bad = predict_files(classifier, files, args.top_k)
    errors += bad
    rows = [p.to_dict() for p in predictions]
    if explain is not None:
        from descend.evaluation.explain import explain_files

        for row, path in zip(rows, explain_files(classifier, predictions, explain)):
            row["explanation"] = path
    if args.json:
        print(json.dumps({"predictions": rows, "errors": errors}, ensure_ascii=False))
    else:
        for p, row in zip(predictions, rows):
            print(f"{p.source}: " + ", ".join(f"{c} {prob:.3f}" for c, prob in p.top)
                  + (f" -> {row['explanation']}" if row.get("explanation") else ""))
        for e in errors:
            print(f"{e['path']}: ERROR {e['error']}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) could not be predicted", file=sys.stderr)
    return 1 if errors else 0


def _explain_dir(value: str | None) -> Path | None:
    """The --explain folder; refused when it names an existing file (--explain took an image
    meant as an input: ``--explain photo.jpg``)."""
    from descend.errors import ConfigError

    if value is None:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--explain takes a folder, and {value} is a file; put --explain after "
                          f"the images, or write --explain=DIR")
    return path
