"""The tutorial (docs/tutorial/en.md and zh.md) cannot drift from the code.

The file tests read the two files: the same steps in both languages, the same recorded output,
the checked lines present in what the files show, every figure in docs/tutorial/img/. They run
in the default suite (a second).

The step tests run the steps once, in order, in a scratch folder (tests/support/tutorial.py),
and check that each command exits with status 0 and still prints the lines the markdown marks
with ``<!-- expect: ... -->``. They are all `slow` (``make test-slow``, which CI runs): the 20
quick steps alone took 3 minutes of a default suite that must stay near 10 on two cores.
Steps marked ``<!-- needs: data -->`` read MNIST or CIFAR-10 (a minute of CIFAR-10 training
among them) and skip without ``$DESCEND_DATA``; steps marked ``<!-- needs: time -->``
(chapter 7's photos at photo size, chapter 5's MLP against the CNN, chapter 9's four schedules,
chapter 2's Muon against the default) run without the data. When a step is selected, every
step before it runs too, since it builds on them (the photos folder, the test web), the data
steps among them when it reads the data: the whole tutorial takes about 15 minutes on a 2-core
AVX2 CPU.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import cast

import pytest

from tests.support import tutorial

STEPS = tutorial.parse(tutorial.TUTORIAL / "en.md").steps


def _id(n: int, step: tutorial.Step) -> str:
    words = re.sub(r"[^A-Za-z0-9_.:-]+", "-", step.label).strip("-")
    return f"{n:02d}-{words[:48]}"


def test_both_languages_have_the_same_steps() -> None:
    docs = tutorial.load()  # raises, naming the step, where they differ
    assert len(docs["zh"].steps) == len(STEPS) > 0


def test_both_languages_show_the_same_output() -> None:
    docs = tutorial.load()
    for n, (en, zh) in enumerate(zip(docs["en"].steps, docs["zh"].steps), start=1):
        assert en.recorded() == zh.recorded(), f"step {n} ({en.label}): regenerate both files"


@pytest.mark.parametrize("lang", tutorial.LANGUAGES)
def test_rewriting_changes_nothing_but_the_outputs(lang: str) -> None:
    """Parsed and rendered back unchanged: regenerating touches only the output lines."""
    path = tutorial.TUTORIAL / f"{lang}.md"
    assert tutorial.parse(path).render() == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", tutorial.LANGUAGES)
def test_the_files_show_the_lines_the_test_checks(lang: str) -> None:
    """An expectation the recorded output does not meet means a hand edit or a file that was
    not regenerated."""
    for step in tutorial.parse(tutorial.TUTORIAL / f"{lang}.md").steps:
        assert step.expects, f"{step.label}: mark its stable lines with <!-- expect: ... -->"
        shown = step.recorded()
        assert shown, f"{step.label}: no recorded output; regenerate the tutorial"
        for pattern in step.expects:
            assert any(re.search(pattern, line) for line in shown), (
                f"{step.label}: the recorded output has no line matching {pattern!r}")


@pytest.mark.parametrize("lang", tutorial.LANGUAGES)
def test_every_figure_is_in_img_and_shown(lang: str) -> None:
    text = (tutorial.TUTORIAL / f"{lang}.md").read_text(encoding="utf-8")
    names = {name for step in STEPS for _, name in step.figures}
    for name in names:
        assert (tutorial.IMG / name).is_file(), f"docs/tutorial/img/{name} is missing"
        assert f"](img/{name})" in text, f"{lang}.md does not show img/{name}"
    shown = set(re.findall(r"\]\(img/([^)]+)\)", text))
    assert shown <= names, f"{lang}.md shows images no step writes: {sorted(shown - names)}"
    stale = {p.name for p in tutorial.IMG.iterdir()} - names
    assert not stale, f"docs/tutorial/img/ holds files no step writes: {sorted(stale)}"


@pytest.fixture(scope="module")
def ran(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> list[tutorial.Result]:
    """The selected steps (and what they build on), run once for both languages."""
    selected = {cast(int, item.callspec.params["n"]) for item in request.session.items
                if isinstance(item, pytest.Function)
                and item.originalname == "test_step_runs_and_prints_its_stable_lines"}
    root = os.environ.get("DESCEND_DATA")
    data = Path(root) if root and Path(root).is_dir() else None
    # A step builds on the steps before it: those run too, the data steps among them when a
    # selected data step will run. Without the data, a data step skips and needs nothing.
    running = {n for n in selected if data is not None or not STEPS[n].needs_data}
    with_data = any(STEPS[n].needs_data for n in running)
    with_slow = any(STEPS[n].slow for n in running)
    only = selected | {n for n in range(max(running, default=-1))
                       if (with_data or not STEPS[n].needs_data)
                       and (with_slow or not STEPS[n].slow)}
    session = tutorial.Session(tmp_path_factory.mktemp("tutorial"), data)
    try:
        return tutorial.run_steps(STEPS, session, only=only)
    finally:
        session.close()


@pytest.mark.slow
@pytest.mark.parametrize("n", [pytest.param(n, id=_id(n + 1, s)) for n, s in enumerate(STEPS)])
def test_step_runs_and_prints_its_stable_lines(ran: list[tutorial.Result], n: int) -> None:
    result = ran[n]
    if result.skipped:
        pytest.skip(result.skipped)
    output = "\n".join(result.lines[-60:])
    assert not result.problems, f"{STEPS[n].label}: {'; '.join(result.problems)}\n{output}"

