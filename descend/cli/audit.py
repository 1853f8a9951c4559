"""``descend audit DATA``: wrong labels, strays and leaks in a dataset; ``--review`` to decide
on each in a local page, ``--apply`` to move the files as decided, ``--undo`` to move them
back."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from descend.cli import common
from descend.cli.flags import add_config_flags, config_values

# The files an audit writes; --review adds decisions.json, which a new audit leaves alone.
AUDIT_FILES = ["audit.json", "suspects.png"]

# Train settings that mean nothing for the folds an audit trains.
NOT_FOR_AUDIT = ("data", "out", "overwrite", "tensorboard", "val_every", "early_stop",
                 "monitor", "min_delta", "init", "pretrained", "weights", "freeze_epochs",
                 "cached_head")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "audit", help="find wrong labels, strays and cross-split duplicates; review and fix "
        "them", description="Predict every image of DATA out of sample (k-fold "
        "cross-validation with the model's recipe), then list the likely wrong labels "
        "(confident learning), the images that fit no class, and the near duplicates across "
        "train/val/test. Writes audit.json and a contact sheet (suspects.png); for an image "
        "folder into PATH/.descend-audit/. Then --review, --apply, --undo.")
    p.add_argument("dataset", metavar="DATA", help="imagefolder:PATH, or any dataset descend "
                   "reads (mnist, cifar10, ...)")
    g = p.add_argument_group("audit")
    g.add_argument("--folds", type=int, default=None, help="cross-validation folds (default: "
                   "3: each model trains on two thirds of the images; 10 for heads on ImageNet "
                   "features, a folder of photos with descend[pretrained] installed)")
    g.add_argument("--from", dest="from_run", metavar="RUN", help="judge with this run's "
                   "model instead of training folds: only its validation images are out of "
                   "sample, so only they are judged (duplicates cover every split)")
    g.add_argument("--review", action="store_true", help="open the review page of the last "
                   "audit: keep, relabel or drop each suspect (nothing is trained)")
    g.add_argument("--host", default="127.0.0.1", help="--review: address (default: "
                   "%(default)s)")
    g.add_argument("--port", type=int, default=8765, help="--review: port (default: "
                   "%(default)s; 0 picks a free one)")
    g.add_argument("--apply", action="store_true", help="move the files as the review decided: "
                   "relabelled ones into their new class folder, dropped ones into "
                   "PATH/_dropped/ (nothing is deleted)")
    g.add_argument("--undo", action="store_true", help="move every file --apply moved back")
    common.add_json(p, "the summary and the folder")
    # --review, --apply and --undo read the audit in --out, so its default is one fixed place.
    common.add_out(p, "audit.json and suspects.png (--review, --apply and --undo read them "
                   "there)", default="PATH/.descend-audit for imagefolder:PATH, else "
                   "runs/audit-<data>")
    # --device, --progress, --strict (stop at the first unusable image) and the rest mean
    # what they mean for descend train, whose settings the folds train with.
    add_config_flags(p, exclude=NOT_FOR_AUDIT)


def run(args: argparse.Namespace) -> int:
    from descend.audit import audit_folder
    from descend.errors import ConfigError

    chosen = [flag for flag, on in (("--review", args.review), ("--apply", args.apply),
                                    ("--undo", args.undo)) if on]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: one at a time (review, then apply; undo "
                          "reverses an apply)")
    folder = audit_folder(args.dataset, args.out)
    if chosen:
        if not (folder / "audit.json").is_file():
            raise ConfigError(f"no audit in {folder}: run descend audit {args.dataset} first")
        return _act(chosen[0], folder, args)
    return _audit(args)


def _audit(args: argparse.Namespace) -> int:
    from descend.extras import require

    require("audit", "descend audit")
    from descend.audit import audit_folder, run_audit
    from descend.config import TrainConfig
    from descend.errors import ConfigError

    if args.folds is not None and args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {args.folds}")
    cfg = TrainConfig.from_dict({**config_values(args), "data": args.dataset}, "flags")
    cfg.validate()
    common.claim_out(audit_folder(args.dataset, args.out), AUDIT_FILES, args.overwrite)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        result = run_audit(cfg, folds=args.folds, out=args.out,  # its log on stderr
                           from_run=args.from_run)
    if args.json:
        common.print_json({"folder": str(result.folder), **result.report["summary"]})
    common.say_written(result.folder, AUDIT_FILES, json_out=args.json)
    return 0


def _act(action: str, folder: Path, args: argparse.Namespace) -> int:
    from descend.extras import require

    if action == "--review":
        require("serve", "descend audit --review")
        from descend.audit.review import serve_review

        serve_review(folder, host=args.host, port=args.port)
        return 0
    from descend.audit.apply import apply_decisions, undo

    result = apply_decisions(folder) if action == "--apply" else undo(folder)
    print(result)
    return 0
