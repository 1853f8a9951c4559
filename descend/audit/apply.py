"""Carry out the review's decisions on the dataset's files, and take them back.

Relabel moves a file to another class folder of its split (``train/cat/x.jpg`` to
``train/dog/x.jpg``; ``cat/x.jpg`` to ``dog/x.jpg`` in a folder without splits); drop moves it
to ``_dropped/`` under the same relative path, where the dataset's scanner does not look. Keep
moves nothing. Nothing is deleted and nothing is overwritten: a name already taken gets
``-1``, ``-2``... before its suffix.

Each batch of moves is added to a journal (``applied.json`` beside the audit) before the first
file moves, so that a run cut short can be finished or undone. What a move has done is read
from the disk rather than trusted to the journal: its source gone and its target there is
done, its source there and its target not is still to do. That makes `apply_decisions` and
`undo` safe to run again at any point, and a decision already applied is not applied twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from descend.audit.decisions import AuditFolder, check_decision, read_decisions
from descend.audit.records import (
    JOURNAL_FILE,
    Audit,
    Decision,
    Move,
    journal_from_json,
    journal_to_json,
    unreadable_journal,
)
from descend.data.folder import DROPPED  # in the dataset's root, never read as a class
from descend.errors import DataError
from descend.io import atomic_write_text

SHOWN = 20  # moves listed when --apply or --undo reports


@dataclass
class ApplyResult:
    moved: list[Move] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # applied by an earlier run
    kept: int = 0
    missing: list[str] = field(default_factory=list)  # no file to move: deleted since the audit
    conflicts: list[str] = field(default_factory=list)  # why each of the others was left alone

    def __str__(self) -> str:
        lines = [f"moved {len(self.moved)} files, {len(self.already)} moved before, "
                 f"{self.kept} kept",
                 *listed(f"  {m.source} -> {m.target}" for m in self.moved)]
        lines += [f"  missing (deleted since the audit?): {p}" for p in self.missing]
        return "\n".join(lines + [f"  left alone: {c}" for c in self.conflicts])


@dataclass
class UndoResult:
    restored: list[Move] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # moved, then deleted: nothing to bring back
    conflicts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"moved {len(self.restored)} files back",
                 *listed(f"  {m.target} -> {m.source}" for m in self.restored)]
        lines += [f"  gone, not brought back: {p}" for p in self.missing]
        return "\n".join(lines + [f"  left alone: {c}" for c in self.conflicts])


def listed(lines: Iterable[str], most: int = SHOWN) -> list[str]:
    """The first ``most`` lines, and how many more there are (the journal has them all)."""
    every = list(lines)
    more = [f"  ... and {len(every) - most} more (all in {JOURNAL_FILE})"] if len(every) > most \
        else []
    return every[:most] + more


def apply_decisions(audit_dir: Path) -> ApplyResult:
    """Move the files the decisions in ``audit_dir`` relabel or drop (see the module)."""
    found = AuditFolder.load(audit_dir)
    audit, root = found.audit, found.root
    if not root.is_dir():
        raise DataError(f"the audited dataset {root} is gone: put it back, or run "
                        "`descend audit` on where it is now")
    decisions = read_decisions(found.folder)
    for path, decision in decisions.items():
        check_decision(audit, path, decision)
    journal = read_journal(found.folder)
    result = ApplyResult()
    # A run cut short: finish its moves. Those it reports on, it has answered for.
    answered = {m.source for m in journal if _finish(root, m, result)}
    earlier = {m.source: m for m in journal}

    planned: list[Move] = []
    taken: set[str] = set()  # targets of this batch, not yet on disk
    making: set[str] = set()  # folders this batch creates
    for path in sorted(set(decisions) | set(earlier)):
        decision = decisions.get(path, Decision("keep"))
        wanted = _destination(audit, path, decision)
        if path in earlier:
            before = earlier[path].target
            # The same folder is the same decision: only a name clash's suffix can differ.
            if wanted is not None and before.rpartition("/")[0] == wanted.rpartition("/")[0]:
                if path not in answered:
                    result.already.append(path)
            else:
                result.conflicts.append(f"{path} was moved to {before} by an earlier apply and "
                                        "its decision changed since: undo, then apply again")
            continue
        if wanted is None:
            result.kept += 1
            continue
        if not os.path.lexists(root / path):
            result.missing.append(path)
            continue
        target = _free_name(root, wanted, taken)
        taken.add(target)
        made = _folders_to_make(root, target, making)
        making.update(made)
        planned.append(Move(path, target, made))

    if planned:  # written before anything moves: a crash from here on can be finished or undone
        write_journal(found.folder, journal + planned)
    for move in planned:
        _move(root, move.source, move.target)
        result.moved.append(move)
    return result


def undo(audit_dir: Path) -> UndoResult:
    """Move every file `apply_decisions` moved back, the last first, and clear the journal.
    The decisions stay: apply again to redo them."""
    found = AuditFolder.load(audit_dir)
    root = found.root
    journal = read_journal(found.folder)
    result = UndoResult()
    left: list[Move] = []
    for move in reversed(journal):
        source, target = root / move.source, root / move.target
        if os.path.lexists(target) and not os.path.lexists(source):
            _move(root, move.target, move.source)
            result.restored.append(move)
        elif os.path.lexists(target):
            result.conflicts.append(f"{move.target} cannot go back to {move.source}: a file is "
                                    "there now; move one of them away, then undo again")
            left.append(move)
            continue
        elif not os.path.lexists(source):
            result.missing.append(move.target)
        for folder in reversed(move.made):  # emptied by this undo; a folder still used stays
            try:
                (root / folder).rmdir()
            except OSError:
                pass
    write_journal(found.folder, left[::-1])
    return result


def read_journal(folder: Path) -> list[Move]:
    file = Path(folder) / JOURNAL_FILE
    if not file.exists():
        return []
    try:
        doc = json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise unreadable_journal(str(file), e) from None
    return journal_from_json(doc, where=str(file))


def write_journal(folder: Path, moves: list[Move]) -> None:
    file = Path(folder) / JOURNAL_FILE
    if not moves:
        file.unlink(missing_ok=True)
        return
    atomic_write_text(file, json.dumps(journal_to_json(moves), indent=1) + "\n")


def _destination(audit: Audit, path: str, decision: Decision) -> str | None:
    """Where ``decision`` moves ``path``; None for keep."""
    if decision.action == "keep":
        return None
    if decision.action == "drop":
        return f"{DROPPED}/{path}"
    assert decision.to is not None  # checked
    return audit.relabelled(path, decision.to)


def _free_name(root: Path, wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``stem-1.ext``, ``stem-2.ext``... the first name neither on disk nor
    taken by this batch."""
    folder, _, name = wanted.rpartition("/")
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    candidate, n = wanted, 0
    while candidate in taken or os.path.lexists(root / candidate):
        n += 1
        candidate = f"{folder}/{stem}-{n}{dot}{suffix}" if folder else f"{stem}-{n}{dot}{suffix}"
    return candidate


def _folders_to_make(root: Path, target: str, making: set[str]) -> tuple[str, ...]:
    """The folders above ``target`` that are not there yet (nor made by an earlier move of
    this batch), outermost first."""
    parts = target.split("/")[:-1]
    folders = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return tuple(f for f in folders if f not in making and not (root / f).is_dir())


def _move(root: Path, source: str, target: str) -> None:
    """Move a file within ``root``, making the folders on the way; never over another file."""
    to = root / target
    if os.path.lexists(to):  # the batch was planned with free names: something came since
        raise DataError(f"{to} appeared while moving files: move it away, then run again "
                        "(nothing was overwritten)")
    to.parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / source, to)


def _finish(root: Path, move: Move, result: ApplyResult) -> bool:
    """Bring one move of an earlier batch to its end, as far as the disk allows; False if it
    was done already."""
    source, target = os.path.lexists(root / move.source), os.path.lexists(root / move.target)
    if source and not target:
        _move(root, move.source, move.target)
        result.moved.append(move)
    elif source and target:
        result.conflicts.append(f"{move.source} was to move to {move.target}, where a file is "
                                "now: move one of them away, then apply again")
    elif not source and not target:
        result.missing.append(move.source)
    return not target or source
