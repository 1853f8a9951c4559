"""Every figure in README.md says where it comes from: a paragraph with a percentage or a
speed-up names its BENCHMARKS.md entry (B1-B15), the tutorial or an issue, or sits beside the
command output it reads from."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FIGURE = re.compile(r"\d+(\.\d+)?%|\d+(\.\d+)?x\b")
SOURCE = re.compile(r"\bB\d+\b|tutorial|issue \d+|\$ descend|above|below")


def blocks(text: str) -> list[tuple[str, str]]:
    """("code" or "text", block) in order; text blocks are split at blank lines."""
    found: list[tuple[str, str]] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            if current and not fenced:
                found.append(("text", "\n".join(current)))
                current = []
            current.append(line)
            if fenced:
                found.append(("code", "\n".join(current)))
                current = []
            fenced = not fenced
        elif not fenced and not line.strip():
            if current:
                found.append(("text", "\n".join(current)))
            current = []
        else:
            current.append(line)
    if current:
        found.append(("code" if fenced else "text", "\n".join(current)))
    return found


def unsourced(text: str) -> list[str]:
    parts = blocks(text)
    return [block[:120] for i, (kind, block) in enumerate(parts)
            if kind == "text" and FIGURE.search(block)
            and not SOURCE.search(" ".join(b for _, b in parts[max(0, i - 2):i + 2]))]


def test_every_figure_names_its_source() -> None:
    assert unsourced(README.read_text(encoding="utf-8")) == []


def test_the_check_sees_a_figure_without_a_source() -> None:
    assert unsourced("Intro.\n\nIt reaches 99.9% on anything.\n") == [
        "It reaches 99.9% on anything."]
    assert unsourced("Intro.\n\nIt reaches 99.9% (BENCHMARKS.md B3).\n") == []
