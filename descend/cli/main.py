"""The ``descend`` command: sub-commands, and errors printed as messages, not tracebacks."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from descend.errors import DescendError
from descend.version import __version__

# Sub-command modules, each with add_parser(subparsers) and run(args) -> exit status.
COMMANDS = ["train", "lr_find", "evaluate", "predict", "data", "audit", "crawl", "gd", "optim",
            "serve", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="descend", description="Train, evaluate and use image classifiers with PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"descend {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"descend.cli.{name}")
        before = set(sub.choices)
        module.add_parser(sub)
        for cmd in set(sub.choices) - before:
            sub.choices[cmd].set_defaults(func=module.run)
    for command in sub.choices.values():
        _debug_after(command)
    return parser


def _debug_after(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too (``descend train --debug``), in its actions too
    (``descend optim compare --debug``)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an unexpected error instead of one line")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _debug_after(child)


# What Ctrl-C leaves behind, for the commands that leave work to continue.
INTERRUPTED = {
    "train": "a training run keeps its last finished epoch in RUN/last.pt: continue it with "
             "`descend train --resume RUN`",
    "crawl": "every image kept so far is in the folder and in its manifest: run the same "
             "command again to continue where it stopped",
}


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 still prints
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown and (extra := getattr(args, "needs_extra", None)):
            # The flags an extra's own parts declare (crawl's sources) are unknown without it.
            from descend.extras import require

            require(extra, f"descend {args.command}")
        if unknown:
            parser.parse_args(argv)  # argparse's own message for the unrecognized flags
        return int(args.func(args) or 0)
    except DescendError as e:
        print(f"descend: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        left = INTERRUPTED.get(args.command)
        print(f"\ndescend {args.command}: interrupted" + (f"; {left}." if left else "."),
              file=sys.stderr)
        return 130
    except MemoryError as e:
        return _out_of_memory(args.command, str(e))
    except RuntimeError as e:  # torch's OutOfMemoryError is one; the CPU allocator's message too
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            if args.debug:
                raise
            return _unexpected(e)
        return _out_of_memory(args.command, str(e).splitlines()[0][:200])
    except BrokenPipeError:  # `descend ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if args.debug:
            raise
        return _unexpected(e)


def entry() -> None:
    """The ``descend`` program (its console script and ``python -m descend``): `main`'s status
    as the process's. A torchrun worker ends without the interpreter's teardown
    (`descend.training.fitting.distributed.leave`)."""
    code = main()
    if "torch.distributed" in sys.modules:  # only a process that imported it can be a worker
        from descend.training.fitting.distributed import leave

        leave(code)
    sys.exit(code)


def _out_of_memory(command: str, what: str) -> int:
    """Not a bug: the batch, the model or the images are too big for this machine."""
    print(f"descend {command}: error: out of memory ({what}): lower --batch-size (and "
          "--eval-batch-size), or --image-size, or use a smaller --model", file=sys.stderr)
    return 2


def _unexpected(e: Exception) -> int:
    """One line on stderr; the traceback goes to a log file, named in that line."""
    log = Path(tempfile.gettempdir()) / f"descend-error-{time.strftime('%Y%m%d-%H%M%S')}.log"
    try:
        log.write_text("".join(traceback.format_exception(e)), encoding="utf-8")
        where = f"the traceback is in {log}"
    except OSError:
        where = "rerun with --debug for the traceback"
    if isinstance(e, OSError):
        what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        print(f"descend: error: {what} (check the path, its permissions and the free disk "
              f"space; {where})", file=sys.stderr)
        return 2
    print(f"descend: internal error: {type(e).__name__}: {str(e)[:200]} (a bug in descend; "
          f"{where}, please report it with the command you ran)", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
