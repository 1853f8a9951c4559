"""One command language, kept: every sub-command's parser is walked, and a flag without help,
a shared flag that means something else in one command, or a command that writes into the
working directory by default fails here (descend/cli/common.py has the convention)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from descend.cli.main import build_parser

# What each shared flag means, in every command that has it: its help must say so.
MEANINGS = {
    "--out": r"folder",
    "--overwrite": r"write over|replace",
    "--json": r"one JSON document",
    "--progress": r"progress",
    "--device": r"auto, cpu, cuda",
    "--batch-size": r"batch|images",
    "--optimizer": r"optimizer",
    "--seed": r"seed|random",
    "--strict": r"stop|refuse|fail|error",
    "--min-size": r"smallest|side|pixels|px",
    "--debug": r"traceback",
}


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """("descend train", its parser), every command and action."""
    def walk(name: str, parser: argparse.ArgumentParser
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not children:
            yield name, parser
        for action in children:
            for child_name, child in action.choices.items():
                yield from walk(f"{name} {child_name}", child)

    yield from walk("descend", build_parser())


def flags(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction,
                                   argparse._VersionAction)):
            yield action


def name_of(action: argparse.Action) -> str:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return longs[0] if longs else (action.option_strings or [action.dest])[0]


COMMANDS = list(commands())


def test_there_are_commands_to_walk() -> None:
    names = [name for name, _ in COMMANDS]
    assert {"descend train", "descend eval", "descend optim compare", "descend crawl"} <= set(names)


@pytest.mark.parametrize("command, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_flag_has_help(command: str, parser: argparse.ArgumentParser) -> None:
    bare = [name_of(a) for a in flags(parser)
            if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert not bare, f"{command}: no help for {', '.join(bare)}"


@pytest.mark.parametrize("command, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_a_shared_flag_means_one_thing(command: str, parser: argparse.ArgumentParser) -> None:
    wrong = [f"{name_of(a)}: {a.help!r}" for a in flags(parser)
             if name_of(a) in MEANINGS and a.help != argparse.SUPPRESS
             and not re.search(MEANINGS[name_of(a)], a.help or "", re.IGNORECASE)]
    assert not wrong, f"{command}: " + "; ".join(wrong)


@pytest.mark.parametrize("command, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_defaults_are_written_one_way(command: str, parser: argparse.ArgumentParser) -> None:
    """A help that gives its default gives it as "(default: X)"."""
    odd = [name_of(a) for a in flags(parser) if a.help and a.help != argparse.SUPPRESS
           and re.search(r"\(default [^:]|default is|defaults to", a.help)]
    assert not odd, f"{command}: default not written '(default: X)' in {', '.join(odd)}"


@pytest.mark.parametrize("command, parser", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_nothing_is_written_into_the_working_directory_by_default(
        command: str, parser: argparse.ArgumentParser) -> None:
    """A default output path is None (the command picks a folder under runs/ or the run's own)
    or under runs/: never a bare file or folder in the directory the user is in."""
    here = []
    for action in flags(parser):
        default = action.default
        if (isinstance(default, (str, Path)) and default != argparse.SUPPRESS
                and action.dest in ("out", "plot", "explain_dir")):
            path = Path(default)
            if not path.is_absolute() and path.parts[:1] != ("runs",):
                here.append(f"{name_of(action)} {default}")
    assert not here, f"{command} writes into the working directory by default: {here}"
