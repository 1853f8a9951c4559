"""``descend data info DATASET`` and ``descend data preview DATASET --augment SPEC``.

``info`` prints counts per class and split, image sizes, mean/std and the problems found
(skipped files with reasons, empty classes, imbalance, duplicates); ``--json`` prints the same
as one JSON object. ``preview`` writes a PNG grid of augmented training samples, exactly as the
training loader would produce them (before normalization).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from descend.data.datasets import datasets_help

DEFAULT_AUGMENT = "crop:4,hflip"  # TrainConfig's default, so a bare preview shows training


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help=datasets_help())
    p.add_argument("--data-root", help="where datasets live (default $DESCEND_DATA, else "
                   "~/.cache/descend/datasets)")
    p.add_argument("--cache-dir", help="where decoded caches go (default $DESCEND_CACHE)")
    p.add_argument("--image-size", type=int, help="side images are decoded at (default: the "
                   "dataset's own, 64 for image folders)")
    p.add_argument("--resize", type=int, help="scale the shorter side to this first")
    p.add_argument("--center-crop", type=int, metavar="N",
                   help="decode the centred N x N window of the image at --resize")
    p.add_argument("--val-fraction", type=float, help="hold out this share of each class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-size", type=int, default=8, help="skip image files with a side under "
                   "this many pixels (default 8)")
    p.add_argument("--strict", action="store_true", help="fail, naming them, if any file is "
                   "unusable")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never touch the network")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="look at a dataset: counts, sizes, statistics, problems, "
                       "augmented samples",
                       description="Inspect a dataset before training on it.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="counts, image sizes, mean/std and problems found",
                              description="Counts per class and split, source image sizes, "
                              "mean/std of the training split, and problems found.")
    _dataset_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--no-duplicates", dest="duplicates", action="store_false",
                      help="skip the exact-duplicate check")
    preview = actions.add_parser("preview", help="a PNG grid of augmented training samples",
                                 description="Write a PNG grid of augmented training samples.")
    _dataset_args(preview)
    preview.add_argument("--augment", default=DEFAULT_AUGMENT,
                         help=f"augmentation spec (default {DEFAULT_AUGMENT})")
    preview.add_argument("--out", default="preview.png", help="the PNG to write")
    preview.add_argument("--n", type=int, default=32, help="how many samples (default 32)")
    preview.add_argument("--columns", type=int, default=8)


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

    report = dataset_report(_load(args)[0], duplicates=args.duplicates)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def _preview(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from descend.data.augment import parse_augment
    from descend.data.images import BadImage
    from descend.data.splits import ImageTensors
    from descend.errors import ConfigError
    from descend.reports.plots import plot_image_grid

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    data, spec = _load(args, args.augment)
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
    plot_image_grid(shown, titles, args.out, columns=args.columns)
    print(f"wrote {args.out}: {len(shown)} training samples of {data.name} with augment "
          f"{augment.spec!r} at {data.channels}x{data.image_size[0]}x{data.image_size[1]}")
    return 0
