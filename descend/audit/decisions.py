"""An audit as the review reads it, and the reviewer's decisions on its findings.

The audit (``PATH/.descend-audit/audit.json``, written by ``descend audit``) lists suspects
(likely wrong labels, images that fit no class) and near-duplicate pairs, by their paths
relative to the dataset's root. The decisions (``decisions.json`` beside it)::

    {"format": 1, "decisions": {"train/cat/x.jpg": {"action": "relabel", "to": "dog"},
                                "val/cat/z.jpg": {"action": "drop"}}}

are keyed by a file's path, so a decision is about a file whether the audit found it as a
suspect, as one side of a duplicate pair, or both. Each decision is written at once, atomically:
a review can stop at any moment (a closed tab, a killed server) and lose nothing. Both files'
records are in `descend.audit.records`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descend.audit.records import (
    AUDIT_FILE,
    AUDIT_FOLDER,
    DECISIONS_FILE,
    Audit,
    Decision,
    Duplicate,
    Suspect,
    decisions_from_json,
    decisions_to_json,
)
from descend.errors import ConfigError, DataError
from descend.io import atomic_write_text

ACTIONS = ("keep", "relabel", "drop")

# One writer at a time in this process: a decision is a read, a change and a write of the file.
_writing = threading.Lock()


@dataclass(frozen=True)
class AuditFolder:
    """An audit's folder (``PATH/.descend-audit``), where its dataset is now, and the audit."""

    folder: Path
    root: Path  # the dataset's folder, PATH
    audit: Audit

    @classmethod
    def load(cls, folder: Path) -> AuditFolder:
        """Read ``folder/audit.json``; `DataError` if it is missing, not an audit, or not of
        files a review can decide on."""
        folder = Path(folder)
        file = folder / AUDIT_FILE
        audit = Audit.from_json(_read_json(file, missing=(
            f"no audit in {folder}: run `descend audit imagefolder:PATH` first, then review "
            f"the {AUDIT_FOLDER} folder it makes in PATH")), where=str(file))
        if None in audit.paths:
            raise DataError(f"{file} is the audit of {audit.data or 'a dataset'}, whose images "
                            "are not files: only the audit of an image folder can be reviewed")
        # The dataset around the audit's folder, even if it was moved since; else as written.
        if folder.name == AUDIT_FOLDER:
            root = folder.parent
        elif audit.root is not None:
            root = Path(audit.root)
        else:
            raise DataError(f"{file} does not say where its dataset is (no 'root'): run "
                            "`descend audit` again")
        return cls(folder, root, audit)


@dataclass(frozen=True)
class Unresolved:
    """The findings without a decision yet."""

    suspects: tuple[Suspect, ...]
    duplicates: tuple[Duplicate, ...]


def read_decisions(folder: Path) -> dict[str, Decision]:
    """The decisions made so far in ``folder`` (an audit's folder); none when there is no file."""
    file = Path(folder) / DECISIONS_FILE
    if not file.exists():
        return {}
    return decisions_from_json(_read_json(file, missing=""), where=str(file))


def check_decision(audit: Audit, path: str, decision: Decision) -> None:
    """`ConfigError` unless ``decision`` is one that can be made on ``path`` in ``audit``."""
    if path not in audit.paths:
        raise ConfigError(f"{path!r} is not among the audit's suspects or duplicates: decide "
                          "only on files the audit lists, by the path it gives")
    if decision.action not in ACTIONS:
        raise ConfigError(f"unknown action {decision.action!r} for {path}: use one of "
                          f"{', '.join(ACTIONS)}")
    if decision.action != "relabel":
        if decision.to is not None:
            raise ConfigError(f"{decision.action} takes no class (got to={decision.to!r}): "
                              "only relabel does")
        return
    if decision.to not in audit.classes:
        raise ConfigError(f"cannot relabel {path} to {decision.to!r}: not a class of this "
                          f"dataset; use one of {', '.join(audit.classes)}")
    if decision.to == audit.class_of(path):
        raise ConfigError(f"{path} is already in class {decision.to}: use keep")


def record_decision(found: AuditFolder, path: str, action: str,
                    to: str | None = None) -> Decision:
    """Check the decision on ``path``, then write it (replacing any earlier one on it)."""
    decision = Decision(action, to)
    check_decision(found.audit, path, decision)
    with _writing:
        decisions = read_decisions(found.folder)
        decisions[path] = decision
        _write(found.folder, decisions)
    return decision


def forget_decision(found: AuditFolder, path: str) -> bool:
    """Take back the decision on ``path``; False if there was none."""
    with _writing:
        decisions = read_decisions(found.folder)
        if decisions.pop(path, None) is None:
            return False
        _write(found.folder, decisions)
    return True


def unresolved(audit: Audit, decisions: dict[str, Decision]) -> Unresolved:
    """The suspects without a decision, and the duplicate pairs with none on either side."""
    return Unresolved(tuple(s for s in audit.suspects if s.path not in decisions),
                      tuple(d for d in audit.duplicates
                            if d.a not in decisions and d.b not in decisions))


def training_notice(root: Path) -> str | None:
    """The one line ``descend train`` prints for an image folder whose audit has findings
    without a decision, or decisions not applied yet; None when there is nothing to say."""
    folder = Path(root) / AUDIT_FOLDER
    if not (folder / AUDIT_FILE).is_file():
        return None
    try:
        found = AuditFolder.load(folder)
        decisions = read_decisions(folder)
    except DataError as e:
        return f"note: the audit in {folder} cannot be read ({e})"
    left = unresolved(found.audit, decisions)
    pending = [p for p, d in decisions.items()
               if d.action != "keep" and (found.root / p).is_file()]
    if not (left.suspects or left.duplicates or pending):
        return None
    parts = [f"{len(left.suspects)} suspect(s)" if left.suspects else "",
             f"{len(left.duplicates)} cross-split duplicate(s)" if left.duplicates else ""]
    told = " and ".join(p for p in parts if p)
    return (f"note: the audit of this folder has {told} without a decision; review with "
            f"descend audit imagefolder:{root} --review" if told else
            f"note: {len(pending)} decision(s) of this folder's audit are not applied yet: "
            f"descend audit imagefolder:{root} --apply")


def _write(folder: Path, decisions: dict[str, Decision]) -> None:
    atomic_write_text(folder / DECISIONS_FILE,
                      json.dumps(decisions_to_json(decisions), indent=1) + "\n")


def _read_json(file: Path, missing: str) -> Any:
    try:
        return json.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {file} ({e}): fix or delete it") from None

