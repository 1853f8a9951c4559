"""``descend data info DATASET`` and ``descend data preview DATASET --augment SPEC``.

``info`` prints counts per class and split, image sizes, mean/std and the problems found
(skipped files with reasons, empty classes, imbalance, duplicates); ``--json`` prints the same
as one JSON object. ``preview`` writes a PNG grid of augmented training samples, exactly as the
training loader would produce them (before normalization).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from typing import Any

from descend.cli import common
from descend.config import TrainConfig, flag_name
from descend.data.datasets import datasets_help
from descend.data.options import DataOptions
from descend.models import DEFAULT_MODEL, recipe_for

FIGURE = "preview.png"
# What a bare preview shows: the augmentation a default `descend train` run trains with, the
# default model's recipe (flips dropped for a dataset that is not mirrored, as train does).
DEFAULT_AUGMENT = recipe_for(DEFAULT_MODEL).augment
# The loader's smallest side, so that info counts and skips the files `descend train` would.
# Crawl's 32 is stricter: it decides what is worth downloading, not what a dataset holds.
MIN_SIZE = DataOptions().min_size


def _train_help(name: str) -> str:
    """TrainConfig's help for setting ``name``, with its default: one text for both commands."""
    meta = next(f for f in dataclasses.fields(TrainConfig) if f.name == name).metadata
    return f"{meta['help']} (default: {meta['default_text']})".replace("%", "%%")


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help=datasets_help())
    numbers: dict[str, type] = {"image_size": int, "resize": int, "center_crop": int,
                                "val_fraction": float}
    for name in ("data_root", "cache_dir", *numbers):
        p.add_argument(flag_name(name), type=numbers.get(name, str),
                       metavar="N" if name == "center_crop" else None, help=_train_help(name))
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the validation split (and of preview's samples and their "
                   "augmentation), as descend train's --seed (default: %(default)s)")
    p.add_argument("--min-size", type=int, default=MIN_SIZE, metavar="PX",
                   help="skip image files with a side under this many pixels: what descend "
                   "train skips (crawl's --min-size, 32, is stricter: it decides what to "
                   "download) (default: %(default)s)")
    p.add_argument("--strict", action="store_true", help="fail, naming them, if any file is "
                   "unusable (default: off, they are skipped and listed)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never touch the network (default: download a missing public dataset)")
    common.add_progress(p)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="look at a dataset: counts, sizes, statistics, problems, "
                       "augmented samples",
                       description="Inspect a dataset before training on it.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="counts, image sizes, mean/std and problems found",
                              description="Counts per class and split, source image sizes, "
                              "mean/std of the training split, and problems found.")
    _dataset_args(info)
    common.add_json(info, "the report")
    info.add_argument("--duplicates", action=argparse.BooleanOptionalAction, default=True,
                      help="look for exact duplicate files (default: on)")
    preview = actions.add_parser("preview", help=f"{FIGURE}: a grid of augmented training "
                                 "samples", description=f"Write {FIGURE}, a grid of augmented "
                                 "training samples, exactly as the training loader makes them "
                                 "(before normalization).")
    _dataset_args(preview)
    preview.add_argument("--augment", metavar="SPEC",
                         help="augmentation spec, e.g. crop:4,hflip,cutout:8 (default: what "
                         f"descend train uses, the default model's recipe: {DEFAULT_AUGMENT}, "
                         "without flips for a dataset that is not mirrored)")
    preview.add_argument("--n", type=int, default=32,
                         help="how many samples (default: %(default)s)")
    preview.add_argument("--columns", type=int, default=8,
                         help="samples per row of the grid (default: %(default)s)")
    common.add_out(preview, FIGURE, "runs/data-preview-<date>-<time>")
    common.add_json(preview, "what the grid shows")


def _load(args: argparse.Namespace, augment: str | None = None) -> tuple[Any, str | None]:
    """The dataset, and ``augment`` without the decode geometry that 0.1 spelled in it."""
    from descend.data.datasets import load_dataset
    from descend.data.geometry import Geometry, split_geometry

    augment, old = split_geometry(augment)
    geometry = Geometry(args.image_size, args.resize, args.center_crop).merged(**old)
    data = load_dataset(args.dataset, args.data_root, args.cache_dir,
                        image_size=geometry.image_size, resize=geometry.resize,
                        center_crop=geometry.center_crop, val_fraction=args.val_fraction,
                        seed=args.seed, download=args.download, strict=args.strict,
                        progress=args.progress, min_size=args.min_size)
    return data, augment


def run(args: argparse.Namespace) -> int:
    if args.data_command == "info":
        return _info(args)
    return _preview(args)


def _info(args: argparse.Namespace) -> int:
    from descend.data.info import dataset_report, format_report

    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        report = dataset_report(_load(args)[0], duplicates=args.duplicates)
    if args.json:
        common.print_json(report)
    else:
        print(format_report(report))
    return 0


def _preview(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from descend.data.augment import parse_augment
    from descend.data.datasets import may_mirror
    from descend.data.images import BadImage
    from descend.data.splits import ImageTensors
    from descend.errors import ConfigError
    from descend.reports.plots import plot_image_grid
    from descend.training.planning.recipe import unmirrored

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.columns < 1:
        raise ConfigError(f"--columns must be at least 1, got {args.columns}")
    given = args.augment or (DEFAULT_AUGMENT if may_mirror(args.dataset)
                             else unmirrored(DEFAULT_AUGMENT))
    folder, figure, old = common.figure_out(args.out, "data-preview", FIGURE)
    common.claim_out(folder, [figure], args.overwrite or old)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        data, spec = _load(args, given)
    augment = parse_augment(spec)
    train = data.train
    g = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(train), generator=g)[:args.n]
    if isinstance(train, ImageTensors):
        images = train.images[pick]
    else:  # streamed: decode just the files shown (leaving out any that turn out broken)
        decoded = {}
        for i in pick.tolist():
            try:
                decoded[i] = train.load(i)
            except BadImage as e:
                print(f"skipped {e}", file=sys.stderr)
        pick = torch.tensor(list(decoded), dtype=torch.int64)
        images = torch.from_numpy(np.stack(list(decoded.values())))
    x = augment(images, g)
    shown = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    titles = [data.classes[int(c)] for c in train.labels[pick]]
    plot_image_grid(shown, titles, folder / figure, columns=args.columns)
    shape = [data.channels, *data.image_size]
    if args.json:
        common.print_json({"dataset": data.name, "augment": augment.spec, "samples": len(shown),
                           "shape": shape, "labels": titles, "file": str(folder / figure)})
    else:
        print(f"{len(shown)} training samples of {data.name} with augment {augment.spec!r} "
              f"at {'x'.join(map(str, shape))}")
    common.say_written(folder, [figure], args.json)
    return 0
