"""The flags every command spells the same way, and where a command's files go.

One convention (README "Commands: one language"):

- ``--out DIR`` is the folder the command writes into. Without it a command writes under
  ``runs/`` (`default_out`: ``runs/<command>-<date>-<time>``), or into the run it reads (eval,
  predict ``--explain``), never into the working directory. The command ends with one line
  saying where its files went (`say_written`).
- Writing over files an earlier run of the command left needs ``--overwrite`` (`claim_out`).
- ``--json`` prints one JSON document on stdout, indented by two spaces (`print_json`); the
  command's log goes to stderr then.
- ``--progress/--no-progress``, ``--device``, ``--batch-size`` mean the same in every command
  that has them; every flag has help, and its default is written "(default: X)".

An old spelling keeps working for one release and says so in one line (`deprecated`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from descend.errors import ConfigError

RUNS = Path("runs")
DEVICES = "auto, cpu, cuda[:N] or mps"


def default_out(command: str) -> Path:
    """``runs/<command>-<YYYYmmdd-HHMMSS>``: a new folder for each run of ``command``."""
    return RUNS / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_out(parser: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    """``--out DIR`` and ``--overwrite``; ``what`` says what goes into the folder, ``default``
    where it goes without ``--out`` (else ``runs/<command>-<date>-<time>``)."""
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"the folder to write {what} into (default: "
                        f"{default or 'runs/<command>-<date>-<time>'})")
    parser.add_argument("--overwrite", action="store_true",
                        help="write over the files an earlier run left in --out (default: refuse)")


def claim_out(folder: Path, names: Iterable[str], overwrite: bool) -> Path:
    """``folder``, created, after checking that none of ``names`` (the files the command is
    about to write) is there already, unless ``overwrite``; `ConfigError` naming the fix."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; --out names the folder to write into")
    there = [n for n in names if (folder / n).exists()]
    if there and not overwrite:
        raise ConfigError(f"{folder} already holds {', '.join(there)} from an earlier run: "
                          "add --overwrite to replace them, or give another --out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def say_written(folder: Path, names: Iterable[str] = (), json_out: bool = False) -> None:
    """The command's last line: where its files went (on stderr under ``--json``, whose
    document has stdout to itself)."""
    listed = ", ".join(names)
    print(f"wrote {listed + ' to ' if listed else ''}{folder}",
          file=sys.stderr if json_out else sys.stdout)


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout (the log goes to "
                        "stderr) (default: a table)")


def print_json(document: Any) -> None:
    """One JSON document, as every ``--json`` prints it."""
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bars on stderr (default: on)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help=f"where the model runs: {DEVICES}; auto picks cuda, then mps, then "
                        "the CPU (default: auto)")


def deprecated(old: str, new: str) -> None:
    """One line on stderr for a spelling that still works this release."""
    print(f"note: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def figure_out(out: Path | None, command: str, name: str, *, old: Path | None = None,
               old_flag: str = "--out") -> tuple[Path, str, bool]:
    """``(folder, file name, old spelling)`` for a command whose figure is ``name``: the folder
    is ``--out DIR`` (else `default_out`). 0.x's spelling of the file itself (``old``, given as
    ``--plot FILE``, or an ``--out`` ending in .png) still writes that file, with a
    `deprecated` note; it wrote over an earlier file, and keeps doing so this release."""
    if old is None and out is not None and out.suffix.lower() == ".png":
        old = out
    if old is not None:
        deprecated(f"{old_flag} FILE.png", f"--out DIR (the figure is DIR/{name})")
        return old.parent, old.name, True
    return (out if out is not None else default_out(command)), name, False
