"""``descend predict CKPT FILES/DIRS/GLOBS``: top-k classes with probabilities.

An unreadable file is reported and makes the exit status 1; every other file is still predicted.
``--explain`` also writes, per image, ``<stem>.explain.png`` into ``--out`` (default
``RUN/explanations/``, in the run of the checkpoint): the picture as the model saw it beside its
heat map for the predicted class (`descend.evaluation.explain`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from descend.cli import common

# Where --explain writes without --out: a folder of the checkpoint's run, as eval writes
# RUN/eval-SPLIT/, never the working directory.
EXPLAIN_DIR = "explanations"
# --explain's value when given alone; `--explain DIR` is the old spelling of --explain --out DIR.
_ALONE = ""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict the class of images",
                       description="Predict images (files, folders, globs) with a checkpoint.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--top-k", type=int, default=3, metavar="K",
                   help="classes listed per image, most probable first (default: 3)")
    common.add_device(p)
    common.add_json(p, '{"predictions": [...], "errors": [...]}')
    common.add_progress(p)
    p.add_argument("--explain", nargs="?", const=_ALONE, metavar="DIR",
                   help="also write each image's heat map of the evidence for its predicted "
                   "class, <name>.explain.png, into --out (Grad-CAM; Integrated Gradients for "
                   "mlp); --explain DIR is the old spelling of --explain --out DIR "
                   "(default: off)")
    common.add_out(p, "the --explain heat maps", default=f"RUN/{EXPLAIN_DIR}/, in the "
                   "checkpoint's run")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.evaluation.predict import Classifier, expand_inputs, predict_files

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    explain = _explain_dir(args)
    classifier = Classifier.load(args.checkpoint, args.device)
    files, errors = expand_inputs(args.inputs)
    if explain is not None:  # `descend predict ckpt . --explain --out .`, run twice, skips its PNGs
        files = [f for f in files if explain.resolve() not in f.resolve().parents]
    predictions, bad = predict_files(classifier, files, args.top_k, progress=args.progress)
    errors += bad
    rows = [p.to_dict() for p in predictions]
    written: list[str] = []
    if explain is not None:
        from descend.evaluation.explain import explain_files, explanation_names

        common.claim_out(explain, explanation_names([p.source for p in predictions]),
                         args.overwrite)
        for row, path in zip(rows, explain_files(classifier, predictions, explain)):
            row["explanation"] = path
            if path:
                written.append(path)
    if args.json:
        common.print_json({"predictions": rows, "errors": errors})
    else:
        for p, row in zip(predictions, rows):
            print(f"{p.source}: " + ", ".join(f"{c} {prob:.3f}" for c, prob in p.top)
                  + (f" -> {row['explanation']}" if row.get("explanation") else ""))
    for e in errors:
        print(f"{e['path']}: ERROR {e['error']}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) could not be predicted", file=sys.stderr)
    if explain is not None:
        maps = f"{len(written)} heat map{'' if len(written) == 1 else 's'}"
        common.say_written(explain, [maps], json_out=args.json)
    return 1 if errors else 0


def _explain_dir(args: argparse.Namespace) -> Path | None:
    """The folder --explain writes into: --out, else RUN/explanations; None without --explain.
    ``--explain DIR``, the old spelling, still names it for this release."""
    from descend.errors import ConfigError

    if args.explain is None:
        if args.out is not None:
            raise ConfigError("--out names where --explain writes its heat maps; add --explain "
                              "(predictions alone write no file)")
        return None
    out: Path | None = args.out
    if args.explain != _ALONE:
        path = Path(args.explain)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--explain takes no value, and {args.explain} is a file: put "
                              "--explain after the images, and the folder in --out DIR")
        common.deprecated(f"--explain {args.explain}", f"--explain --out {args.explain}")
        out = out or path
    if out is None:
        checkpoint = Path(args.checkpoint)
        out = (checkpoint if checkpoint.is_dir() else checkpoint.parent) / EXPLAIN_DIR
    return out
