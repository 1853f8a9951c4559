"""Every ``descend ...`` command that README.md and the tutorials show parses against the real
command line: a renamed or removed flag fails here, not in a reader's terminal."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from descend.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *(ROOT / "docs" / "tutorial" / f"{lang}.md" for lang in ("en", "zh"))]
FENCE = re.compile(r"^```(\w*)")


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line, command) of each ``descend`` command in the file's ```console (``$ `` lines),
    ```sh and ```bash blocks; a line ending in ``\\`` goes on to the next."""
    found: list[tuple[int, str]] = []
    kind = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            kind = None if kind is not None else (fence.group(1) or "text")
            continue
        if kind not in ("console", "sh", "bash"):
            continue
        text = line[2:] if kind == "console" and line.startswith("$ ") else (
            line if kind != "console" or pending else None)
        if text is None:
            continue
        if not pending:
            start = number
        pending += text.strip().rstrip("\\").rstrip() + " "
        if text.rstrip().endswith("\\"):
            continue
        command, pending = pending.strip(), ""
        if re.search(r"(^|\s|-m )descend(\s|$)", command):
            found.append((start, command))
    return found


def descend_argv(command: str) -> list[str] | None:
    """The arguments after ``descend`` (or ``-m descend``) in a shell line, up to a pipe,
    redirect or ``&``; None for a line that only mentions descend (``pip install descend``)."""
    command = re.split(r"\s(?:\||>|2>|&&|;)\s|\s&$", command)[0]
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words):
        if word == "descend" and (i == 0 or words[i - 1] == "-m" or "=" in words[i - 1]):
            return words[i + 1:]
    return None


CASES = [(f"{path.relative_to(ROOT)}:{line}", command)
         for path in DOCS for line, command in shown_commands(path)]


def test_the_docs_show_commands_to_check() -> None:
    assert len(CASES) > 60, len(CASES)


@pytest.mark.parametrize("where, command", CASES, ids=[where for where, _ in CASES])
def test_each_shown_command_parses(where: str, command: str) -> None:
    argv = descend_argv(command)
    if argv is None or not argv or argv[0] in ("--help", "-h", "--version") or "..." in argv:
        return  # not a descend command, or one shown with its arguments left out
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: `descend {' '.join(argv)}` does not parse (exit {e.code})")


def test_the_reader_finds_console_sh_and_continued_lines(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("```console\n$ descend train --data mnist \\\n    --epochs 2\nepoch 1/2\n```\n"
                   "```sh\npip install descend\ntorchrun -m descend eval runs/x | head\n```\n"
                   "```python\ndescend train --bogus\n```\n")
    commands = [c for _, c in shown_commands(doc)]
    assert commands == ["descend train --data mnist --epochs 2", "pip install descend",
                        "torchrun -m descend eval runs/x | head"]
    assert [descend_argv(c) for c in commands] == [
        ["train", "--data", "mnist", "--epochs", "2"], None, ["eval", "runs/x"]]
