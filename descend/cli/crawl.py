"""``descend crawl``: collect labelled images from the web into OUT/{train,val}/<class>/."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from descend.cli import common
from descend.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from descend.crawl import CrawlConfig
    from descend.crawl.sources import SourceOption


def source_names() -> list[str] | None:
    """The crawl sources, or None without the crawl extra (`run` then names it)."""
    try:
        from descend.crawl import SOURCES
    except MissingExtraError:
        return None
    return SOURCES.names()


def taking(option: str) -> list[str]:
    """The sources that take ``option`` (``base_url``: the web searches), [] without the crawl
    extra."""
    try:
        from descend.crawl import SOURCES
    except MissingExtraError:
        return []
    return [name for name in SOURCES if any(o.name == option for o in SOURCES.get(name).options)]


def own_options() -> list[SourceOption]:
    """The options of single sources (``--urls-file``), each a flag of its own; those that are
    settings of the whole crawl (``--base-url``) have that setting's flag. [] without the crawl
    extra, whose sources are then unknown."""
    try:
        from descend.crawl import CrawlConfig
        from descend.crawl.sources import source_options
    except MissingExtraError:
        return []
    crawl_settings = {f.name for f in dataclasses.fields(CrawlConfig)}
    return [o for o in source_options() if o.name not in crawl_settings]


EXAMPLES = """\
examples:
  descend crawl --class cat=猫 --class dog=狗 --per-class 150 --out data/pets
  descend crawl --class cat=猫,小猫 --class dog=狗 --source bing --out data/pets
  descend crawl --source urls --urls-file pets.txt --out data/pets   (lines: class url)

Running the same command again continues an interrupted crawl: the manifest
OUT/manifest.jsonl records every URL (kept, with its sha256, phash, path and
split; or rejected, with the reason), and nothing kept or rejected for good is
downloaded again. Then train with: descend train --data imagefolder:OUT

Duplicates (same pixels, or perceptual hashes within --phash-distance bits) are
dropped across classes and splits, so no val image has a twin in train; an
image found under two classes is kept under the class named first. Candidates
are decided in search order, so the kept set does not depend on network timing.
"""


def add_parser(subparsers: Any) -> None:
    """Add the ``crawl`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "crawl",
        help="collect images from the web into a train/val image folder",
        description="Search the web for images of each class, download them safely, drop\n"
        "broken images and duplicates, and split them into OUT/train and OUT/val."
        + ("" if source_names() else "\n\nThe crawl extra is not installed, so the sources and "
           "their own options\nare unknown: pip install 'descend[crawl]'"),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--class", dest="classes", action="append", default=[],
                   metavar="NAME[=WORD,...]",
                   help="a class and its search words (repeatable); NAME alone searches NAME "
                   "(default: the classes the source names, as a --urls-file does)")
    p.add_argument("--per-class", type=int, default=100, metavar="N",
                   help="images to keep per class (default: 100)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="the folder to write train/, val/ and manifest.jsonl into (required, "
                   "no default: it is the dataset you train on next, and running the same "
                   "command with the same --out resumes an interrupted crawl, so it is not "
                   "a new runs/crawl-<date>-<time> each time)")
    p.add_argument("--source", default="baidu", choices=source_names(),
                   help="where to search (default: baidu)")
    if source_names() is None:  # the sources' own flags are unknown: `main` names the extra
        p.set_defaults(needs_extra="crawl")
    for option in own_options():
        p.add_argument(option.flag, dest=option.name, type=option.type, metavar=option.metavar,
                       help=option.help)
    p.add_argument("--base-url", metavar="URL",
                   help=f"replace the source's scheme://host:port ({', '.join(taking('base_url'))}"
                   "), e.g. a mirror or a local test server; that host:port may then be a "
                   "private address (default: the source's own)")
    p.add_argument("--allow-private-addresses", action="store_true",
                   help="also fetch from loopback, private and link-local addresses (by "
                   "default only public ones, so that a search result or a redirect cannot "
                   "reach a machine on your network) (default: off)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each class put in val/ (default: 0.2)")
    p.add_argument("--seed", type=int, default=0,
                   help="the random seed that picks which images go to val/ (default: 0)")
    p.add_argument("--min-size", type=int, default=32, metavar="PX",
                   help="the smallest side in pixels an image may have; smaller ones are rejected "
                   "(default: 32)")
    p.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="parallel downloads (default: 8)")
    p.add_argument("--rate", type=float, metavar="R",
                   help="at most R requests per second to any one host (default: no limit)")
    p.add_argument("--max-bytes", default="10MB", metavar="SIZE",
                   help="largest file downloaded, e.g. 500k, 10MB (default: 10MB)")
    p.add_argument("--max-total-bytes", metavar="SIZE",
                   help="stop after downloading this much in this run (default: no limit)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds for one attempt, connect to last byte (default: 30)")
    p.add_argument("--retries", type=int, default=3, metavar="N",
                   help="extra attempts after a timeout, connection error, 429 or 5xx "
                   "(default: 3)")
    p.add_argument("--backoff", type=float, default=0.5, metavar="S",
                   help="first retry waits about S seconds, doubling each time (default: 0.5)")
    p.add_argument("--phash-distance", type=int, default=6, metavar="BITS",
                   help="images whose perceptual hashes differ in at most BITS of 64 are "
                   "duplicates (default: 6)")
    p.add_argument("--fail-if-short", action="store_true",
                   help="exit with status 1 if any class ends with fewer than --per-class images "
                   "(default: exit 0, and the summary names the short classes)")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # --fail-if-short
    common.add_json(p, "the summary (per class: kept, train, val, rejected by reason; the "
                    "folder)")
    common.add_progress(p)


def config_from_args(args: argparse.Namespace) -> CrawlConfig:
    """The `CrawlConfig` an argument namespace asks for; `ConfigError` for bad values."""
    from descend.crawl import CrawlConfig, create_source, parse_class_spec, parse_size

    options = {o.name: getattr(args, o.name) for o in own_options()
               if getattr(args, o.name) is not None}
    classes = [parse_class_spec(text) for text in args.classes]
    if not classes:  # a source that names its classes (a URL list) gives them
        source = create_source(args.source, base_url=args.base_url, **options)
        classes = [parse_class_spec(name) for name in source.classes()]
    if not classes:
        raise ConfigError("no class to crawl: give --class NAME=WORD once per class, "
                          "e.g. --class cat=猫 --class dog=狗")
    return CrawlConfig(
        classes=classes,
        out=args.out,
        per_class=args.per_class,
        source=args.source,
        base_url=args.base_url,
        source_options=options,
        val_fraction=args.val_fraction,
        seed=args.seed,
        min_size=args.min_size,
        concurrency=args.concurrency,
        rate=args.rate,
        max_bytes=parse_size(args.max_bytes),
        max_total_bytes=parse_size(args.max_total_bytes) if args.max_total_bytes else None,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        phash_distance=args.phash_distance,
        progress=args.progress,
        allow_private_addresses=args.allow_private_addresses,
    ).validate()


def run(args: argparse.Namespace) -> int:
    """Crawl, print the per-class summary; 1 under --fail-if-short when a class came up short."""
    from descend.crawl import crawl

    if args.strict:  # it never meant what --strict means elsewhere: stop at a bad file
        common.deprecated("crawl --strict", "--fail-if-short")
        args.fail_if_short = True
    config = config_from_args(args)
    try:
        report = crawl(config)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {config.out}/manifest.jsonl keeps what was done: run the same "
              "command again to continue", file=sys.stderr)
        return 130
    if args.json:
        common.print_json(report.to_dict())
    else:
        print(report.format())
    common.say_written(config.out, ["train/", "val/", "manifest.jsonl"], json_out=args.json)
    if args.fail_if_short and report.short:
        names = ", ".join(f"{c.name} ({c.kept}/{c.target})" for c in report.short)
        print(f"--fail-if-short: too few images for {names}", file=sys.stderr)
        return 1
    return 0
