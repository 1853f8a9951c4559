"""The ``descend`` command: sub-commands, and errors printed as messages, not tracebacks."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from descend import __version__
from descend.errors import DescendError

# Sub-command modules, each with add_parser(subparsers) and run(args) -> exit status.
COMMANDS = ["train", "evaluate", "predict", "data", "crawl", "gd", "optim"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="descend", description="Train, evaluate and use image classifiers with PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"descend {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"descend.cli.{name}")
        before = set(sub.choices)
        module.add_parser(sub)
        for cmd in set(sub.choices) - before:
            sub.choices[cmd].set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DescendError as e:
        print(f"descend: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndescend: interrupted. A training run keeps its last finished epoch in "
              "RUN/last.pt: continue it with `descend train --resume RUN`.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
