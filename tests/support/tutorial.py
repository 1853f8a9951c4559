"""The tutorial as a program: docs/tutorial/en.md and zh.md are parsed, every step is run in a
scratch folder, and the real output is written back into both files.

Regenerate both files and their figures (from the repository root, with the datasets set):

    DESCEND_DATA=../shared/datasets .venv/bin/python -m tests.support.tutorial

(``make tutorial`` runs the same.) ``--keep DIR`` runs in DIR and leaves it there, to look at
what the steps wrote. ``--section N`` runs only the steps of section N (under its ``## N.``
heading) and rewrites only their outputs and figures, the rest of both files as it is: for a
section that builds on no earlier one (it needs ``DESCEND_DATA`` only if one of its steps
does). tests/test_tutorial.py runs the same steps through `run_steps` and checks them, without
writing anything.

What the markdown holds:

- A ```console block is run. Each line that starts with ``$ `` is a command (a line that ends
  in ``\\`` goes on to the next), run by bash in the tutorial's working folder; the lines after
  a command, up to the next ``$ ``, are its output and are rewritten. A command that ends in
  `` &`` starts a server: its first lines are its output, and it is stopped when the tutorial
  ends.
- A ```python block is run by this Python in the same folder; the ```text block right after it
  is its output, rewritten (added when missing).
- Any other block (```sh, ```toml, a ```text block of its own) is shown and never run.
- HTML comments on the lines just before a run block describe it; they are kept as they are:

  ``<!-- needs: time -->``: the step takes long (minutes of photo-sized work): the tests
  leave it to the slow suite, and no step of the default suite may depend on it.
  ``<!-- needs: data -->``: the step reads MNIST or CIFAR-10 (``$DESCEND_DATA``), or a run
  made from them; without the datasets the test skips it, and no other step may depend on it.
  ``<!-- expect: REGEX -->``: some line of the block's output must match (``re.search``). These
  are the lines that must not drift; timings and accuracies vary and are left unchecked.
  ``<!-- figure: PATH -->`` or ``<!-- figure: PATH as NAME -->``: the step writes PATH (relative
  to the working folder); it is copied to docs/tutorial/img/NAME (default: PATH's file name).

Commands run with the venv's ``bin`` first on ``PATH`` (so ``descend`` and ``python`` are the
venv's), the repository root on ``PYTHONPATH`` (the test web, ``tests.support.fakeweb``, lives
there) and ``DESCEND_CACHE`` inside the working folder, so nothing is written outside it. In the
recorded output the working folder's path is left out (paths are relative to it, as a reader's
would be) and the datasets' path is written ``$DESCEND_DATA``.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial"
LANGUAGES = ("en", "zh")
IMG = TUTORIAL / "img"

COMMAND_TIMEOUT = 600  # seconds; the longest step takes well under a minute
SERVER_START = 60  # seconds a background server may take to print its first line
SERVER_QUIET = 0.5  # after its first line, a server's output ends at this long a pause

_DIRECTIVE = re.compile(r"^<!-- (needs|expect|figure): (.*?) -->\s*$")
_SECTION = re.compile(r"^## (\d+)\. ")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Command:
    """One ``$ `` command of a console block and the output recorded under it."""

    text: str  # as typed, continuation lines included ("\\\n" between them)
    output: list[str] = field(default_factory=list)

    @property
    def background(self) -> bool:
        return self.text.rstrip().endswith("&")


@dataclass
class Step:
    """A block the tutorial runs: a console block (its commands) or a python block (its code)."""

    kind: str  # "console" or "python"
    commands: list[Command] = field(default_factory=list)
    code: str = ""
    output: list[str] = field(default_factory=list)  # a python block's recorded output
    needs_data: bool = False
    slow: bool = False  # ``needs: time``: a long step, left to the slow tests
    expects: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (path written, name in img/)

    @property
    def label(self) -> str:
        """A short name: the first command, or the python block's first line that says much."""
        if self.kind == "console":
            return self.commands[0].text.splitlines()[0]
        lines = [ln for ln in self.code.splitlines() if ln.strip() and not ln.startswith("#")]
        return "python: " + (lines[0] if lines else "")

    def signature(self) -> tuple[object, ...]:
        """What must be the same in every language: what runs and what is checked."""
        what = tuple(c.text for c in self.commands) if self.kind == "console" else self.code
        return (self.kind, what, self.needs_data, self.slow, tuple(self.expects),
                tuple(self.figures))

    def recorded(self) -> list[str]:
        """The output the markdown shows for the whole block."""
        if self.kind == "python":
            return list(self.output)
        return [line for c in self.commands for line in c.output]


# --- the markdown ------------------------------------------------------------------------------

@dataclass
class Document:
    """A tutorial file: its text as raw lines with the run steps in between."""

    path: Path
    parts: list[str | Step]  # a raw line, or a step (rendered back as its block(s))

    @property
    def steps(self) -> list[Step]:
        return [p for p in self.parts if isinstance(p, Step)]

    def section_steps(self, number: int) -> set[int]:
        """The indices (in `steps`) of the steps under the heading ``## NUMBER.``, up to the
        next ``## `` heading."""
        found: set[int] = set()
        current: int | None = None
        n = 0
        for part in self.parts:
            if isinstance(part, Step):
                if current == number:
                    found.add(n)
                n += 1
            elif part.startswith("## "):
                heading = _SECTION.match(part)
                current = int(heading[1]) if heading else None
        return found

    def render(self) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part.kind == "console":
                out.append("```console")
                for c in part.commands:
                    first, *rest = c.text.split("\n")
                    out += ["$ " + first, *rest, *c.output]
                out.append("```")
            else:
                out += ["```python", *part.code.split("\n"), "```"]
                if part.output:
                    out += ["", "```text", *part.output, "```"]
        return "\n".join(out) + "\n"


def parse(path: Path) -> Document:
    lines = path.read_text(encoding="utf-8").splitlines()
    parts: list[str | Step] = []
    pending: list[tuple[str, str]] = []  # directives waiting for their block
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        fence = _FENCE.match(line)
        if directive:
            pending.append((directive[1], directive[2].strip()))
            parts.append(line)
            i += 1
        elif fence and fence[1] in ("console", "python"):
            end = _closing(lines, i, path)
            body = lines[i + 1:end]
            step = Step(fence[1])
            if fence[1] == "console":
                step.commands = _commands(body, path, i)
            else:
                step.code = "\n".join(body)
            i = end + 1
            if fence[1] == "python":  # its output: a ```text block just after it
                j = i + 1 if i < len(lines) and not lines[i].strip() else i
                if j < len(lines) and lines[j] == "```text":
                    close = _closing(lines, j, path)
                    step.output = lines[j + 1:close]
                    i = close + 1
            _describe(step, pending, path, i)
            pending = []
            parts.append(step)
        elif fence:  # a block that is only shown: copied as it is
            end = _closing(lines, i, path)
            parts += lines[i:end + 1]
            pending = []
            i = end + 1
        else:
            if line.strip():
                if pending:
                    raise ValueError(f"{path}:{i + 1}: a directive ({pending[0][0]}) must come "
                                     "just before the console or python block it describes")
            parts.append(line)
            i += 1
    if pending:
        raise ValueError(f"{path}: directives at the end with no block after them")
    return Document(path, parts)


def _closing(lines: list[str], start: int, path: Path) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].startswith("```"):
            return j
    raise ValueError(f"{path}:{start + 1}: a code block that is never closed")


def _commands(body: list[str], path: Path, at: int) -> list[Command]:
    commands: list[Command] = []
    k = 0
    while k < len(body):
        line = body[k]
        if line.startswith("$ "):
            text = [line[2:]]
            while text[-1].endswith("\\") and k + 1 < len(body):
                k += 1
                text.append(body[k])
            commands.append(Command("\n".join(text)))
        elif not commands:
            raise ValueError(f"{path}:{at + k + 2}: output before the first '$ ' command")
        else:
            commands[-1].output.append(line)
        k += 1
    if not commands:
        raise ValueError(f"{path}:{at + 1}: a console block with no '$ ' command")
    return commands


def _describe(step: Step, directives: list[tuple[str, str]], path: Path, at: int) -> None:
    for kind, value in directives:
        if kind == "needs":
            if value not in ("data", "time"):
                raise ValueError(f"{path}: 'needs: {value}': the needs are 'data' and 'time'")
            step.needs_data = step.needs_data or value == "data"
            step.slow = step.slow or value == "time"
        elif kind == "expect":
            re.compile(value)  # a bad pattern fails here, at parse time
            step.expects.append(value)
        else:
            src, _, name = value.partition(" as ")
            step.figures.append((src.strip(), name.strip() or Path(src.strip()).name))


def load() -> dict[str, Document]:
    """Both languages; a `ValueError` when their steps differ in anything that runs or is
    checked."""
    docs = {lang: parse(TUTORIAL / f"{lang}.md") for lang in LANGUAGES}
    first, *others = LANGUAGES
    for lang in others:
        mine, theirs = docs[first].steps, docs[lang].steps
        if len(mine) != len(theirs):
            raise ValueError(f"{first}.md has {len(mine)} steps, {lang}.md {len(theirs)}")
        for n, (a, b) in enumerate(zip(mine, theirs), start=1):
            if a.signature() != b.signature():
                raise ValueError(f"step {n} differs between {first}.md and {lang}.md: "
                                 f"{a.label!r} / {b.label!r}")
    return docs


# --- running -----------------------------------------------------------------------------------

@dataclass
class Result:
    """What one step did: per command (or the python block) its exit status and output."""

    skipped: str | None = None
    returncodes: list[int] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # empty when the step did what it says

    @property
    def lines(self) -> list[str]:
        return [line for out in self.outputs for line in out]


class Session:
    """The working folder and the environment every step runs in, and the servers started."""

    def __init__(self, workdir: Path, data: Path | None) -> None:
        self.workdir = workdir.resolve()
        self.data = data.resolve() if data else None
        env = dict(os.environ)
        env.pop("DESCEND_DATA", None)
        if self.data:
            env["DESCEND_DATA"] = str(self.data)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["DESCEND_CACHE"] = str(self.workdir / "cache")
        env["PYTHONIOENCODING"] = "utf-8"
        self.env = env
        self.servers: list[subprocess.Popen[str]] = []

    def normalise(self, text: str) -> list[str]:
        text = text.replace(str(self.workdir) + "/", "").replace(str(self.workdir), ".")
        if self.data:
            text = text.replace(str(self.data), "$DESCEND_DATA")
        lines = [line.rstrip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def shell(self, command: str) -> tuple[int, list[str]]:
        done = subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              encoding="utf-8", errors="replace", timeout=COMMAND_TIMEOUT)
        return done.returncode, self.normalise(done.stdout)

    def python(self, code: str) -> tuple[int, list[str]]:
        done = subprocess.run([sys.executable, "-"], input=code, cwd=self.workdir, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              encoding="utf-8", errors="replace", timeout=COMMAND_TIMEOUT)
        return done.returncode, self.normalise(done.stdout)

    def server(self, command: str) -> tuple[int, list[str]]:
        """Start ``command`` (without its ``&``) and return its first lines; 0 while it runs."""
        proc = subprocess.Popen(["bash", "-c", "exec " + command.rstrip().rstrip("&")],
                                cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                                errors="replace", start_new_session=True)
        self.servers.append(proc)
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        got: list[str] = []
        wait = float(SERVER_START)
        while True:
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                break
            if line is None:  # it ended: a server that exits at once failed
                return proc.wait() or 1, self.normalise("".join(got))
            got.append(line)
            wait = SERVER_QUIET
        return (0 if got else 1), self.normalise("".join(got))

    def close(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def run_step(step: Step, session: Session) -> Result:
    if step.needs_data and session.data is None:
        return Result(skipped="needs MNIST or CIFAR-10: set DESCEND_DATA to the datasets folder "
                              "(CI sets ../shared/datasets)")
    result = Result()
    start = time.perf_counter()
    if step.kind == "python":
        rc, out = session.python(step.code)
        result.returncodes.append(rc)
        result.outputs.append(out)
    else:
        for command in step.commands:
            text = command.text.replace("\\\n", " ")
            rc, out = session.server(text) if command.background else session.shell(text)
            result.returncodes.append(rc)
            result.outputs.append(out)
            if rc != 0:
                break  # as `set -e` would: what follows needed this command
    result.seconds = time.perf_counter() - start
    result.problems = check(step, result, session.workdir)
    return result


def check(step: Step, result: Result, workdir: Path) -> list[str]:
    """What the step failed to do: a non-zero exit, an expected line missing, a figure not
    written."""
    problems = [f"exit status {rc}" for rc in result.returncodes if rc != 0]
    lines = result.lines
    problems += [f"no output line matches {pattern!r}" for pattern in step.expects
                 if not any(re.search(pattern, line) for line in lines)]
    problems += [f"{src} was not written" for src, _ in step.figures
                 if not (workdir / src).is_file()]
    return problems


def run_steps(steps: list[Step], session: Session, stop_on_failure: bool = False,
              log: bool = False, only: set[int] | None = None) -> list[Result]:
    """Run ``steps`` in order (``only``: just those indices, the others skipped)."""
    results: list[Result] = []
    for n, step in enumerate(steps, start=1):
        if only is not None and n - 1 not in only:
            results.append(Result(skipped="not selected in this test run"))
            continue
        if log:
            print(f"[{n}/{len(steps)}] {step.label}", file=sys.stderr, flush=True)
        result = run_step(step, session)
        results.append(result)
        if log:
            status = result.skipped or "; ".join(result.problems) or "ok"
            print(f"        {result.seconds:.1f} s: {status}", file=sys.stderr, flush=True)
        if result.problems and stop_on_failure:
            break
    return results


# --- regenerating ------------------------------------------------------------------------------

def regenerate(workdir: Path, data: Path | None, section: int | None = None) -> int:
    """Run the steps (all, or those of ``section``) and write their outputs and figures back
    into both files; nothing is written if a step fails."""
    docs = load()
    steps = docs[LANGUAGES[0]].steps
    only = None if section is None else docs[LANGUAGES[0]].section_steps(section)
    session = Session(workdir, data)
    start = time.perf_counter()
    try:
        results = run_steps(steps, session, stop_on_failure=True, log=True, only=only)
    finally:
        session.close()
    failed = [(n, r) for n, r in enumerate(results, start=1) if r.problems]
    if failed:
        n, r = failed[0]
        print(f"step {n} ({steps[n - 1].label}) failed: {'; '.join(r.problems)}\n"
              + "\n".join(r.lines[-40:]), file=sys.stderr)
        print("nothing was rewritten", file=sys.stderr)
        return 1
    for doc in docs.values():
        for step, result in zip(doc.steps, results):
            if result.skipped:  # not selected (--section): its recorded output stays
                continue
            if step.kind == "python":
                step.output = result.outputs[0]
            else:
                for command, out in zip(step.commands, result.outputs):
                    command.output = out
        doc.path.write_text(doc.render(), encoding="utf-8")
    ran = [step for step, result in zip(steps, results) if not result.skipped]
    IMG.mkdir(exist_ok=True)
    for step in ran:
        for src, name in step.figures:
            shutil.copyfile(session.workdir / src, IMG / name)
    print(f"rewrote {', '.join(str(d.path.relative_to(ROOT)) for d in docs.values())} and "
          f"{sum(len(s.figures) for s in ran)} figures in {IMG.relative_to(ROOT)}/: "
          f"{len(ran)} steps in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.tutorial",
        description="Run every step of docs/tutorial/{en,zh}.md and write the real output "
        "and figures back.")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR (empty or new) and keep it; default: a temporary "
                        "folder, removed after")
    parser.add_argument("--section", type=int, metavar="N",
                        help="run only the steps of section N ('## N.') and rewrite only their "
                        "outputs and figures; default: every step")
    args = parser.parse_args(argv)
    root = os.environ.get("DESCEND_DATA")
    data = Path(root) if root and Path(root).is_dir() else None
    needs_data = True
    if args.section is not None:
        en = load()[LANGUAGES[0]]
        chosen = en.section_steps(args.section)
        if not chosen:
            print(f"--section {args.section}: no '## {args.section}.' section with steps",
                  file=sys.stderr)
            return 2
        needs_data = any(en.steps[n].needs_data for n in chosen)
    if needs_data and data is None:
        print("set DESCEND_DATA to the datasets folder (MNIST and CIFAR-10): every step of the "
              "tutorial is run before it is rewritten", file=sys.stderr)
        return 2
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            print(f"--keep {args.keep}: not empty; the steps need an empty folder (their runs/ "
                  "would be refused as existing)", file=sys.stderr)
            return 2
        args.keep.mkdir(parents=True, exist_ok=True)
        return regenerate(args.keep, data, args.section)
    with tempfile.TemporaryDirectory(prefix="descend-tutorial-") as tmp:
        return regenerate(Path(tmp), data, args.section)


if __name__ == "__main__":
    raise SystemExit(main())
