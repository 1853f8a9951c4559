"""An audit as the review reads it, and the reviewer's decisions on its findings.

The audit (``PATH/.descend-audit/audit.json``, written by ``descend audit``) lists suspects
(likely wrong labels, images that fit no class) and near-duplicate pairs, by their paths
relative to the dataset's root. The decisions (``decisions.json`` beside it)::

    {"format": 1, "decisions": {"train/cat/x.jpg": {"action": "relabel", "to": "dog"},
                                "val/cat/z.jpg": {"action": "drop"}}}

are keyed by a file's path, so a decision is about a file whether the audit found it as a
suspect, as one side of a duplicate pair, or both. Each decision is written at once, atomically:
a review can stop at any moment (a closed tab, a killed server) and lose nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from descend.errors import ConfigError, DataError
from descend.io import atomic_write_text

FORMAT = 1
AUDIT_FILE = "audit.json"
DECISIONS_FILE = "decisions.json"
AUDIT_FOLDER = ".descend-audit"  # in the dataset's root
ACTIONS = ("keep", "relabel", "drop")
SPLITS = ("train", "val", "test")

# One writer at a time in this process: a decision is a read, a change and a write of the file.
_writing = threading.Lock()


@dataclass(frozen=True)
class Suspect:
    """An image whose label looks wrong (kind "label") or that fits no class ("outlier")."""

    id: str
    path: str
    split: str
    given: str
    suggested: str | None
    kind: str
    score: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Duplicate:
    """Two images that are (nearly) the same, usually in different splits: a leak."""

    id: str
    a: str
    b: str
    splits: tuple[str, ...]
    hash_distance: int | None
    cosine: float | None


@dataclass(frozen=True)
class Audit:
    """The findings of one audit, and where its dataset is."""

    folder: Path  # the audit's own folder, PATH/.descend-audit
    root: Path  # the dataset's folder, PATH
    data: str
    classes: tuple[str, ...]
    suspects: tuple[Suspect, ...]
    duplicates: tuple[Duplicate, ...]

    @property
    def paths(self) -> frozenset[str]:
        """Every file the audit names: those a decision may be about."""
        return frozenset([s.path for s in self.suspects]
                         + [p for d in self.duplicates for p in (d.a, d.b)])

    def class_part(self, path: str) -> int:
        """Which part of ``path`` is its class folder: 1 in the split layout
        (``train/cat/x.jpg``), 0 in the flat one (``cat/x.jpg``)."""
        parts = path.split("/")
        return 1 if len(parts) >= 3 and parts[0] in SPLITS and parts[1] in self.classes else 0

    def class_of(self, path: str) -> str:
        return path.split("/")[self.class_part(path)]

    def relabelled(self, path: str, to: str) -> str:
        """Where ``path`` goes when relabelled ``to``: the same split, the other class folder."""
        parts = path.split("/")
        parts[self.class_part(path)] = to
        return "/".join(parts)

    @classmethod
    def load(cls, folder: Path) -> Audit:
        """Read ``folder/audit.json``; `DataError` if it is missing or not an audit."""
        folder = Path(folder)
        doc = _read_json(folder / AUDIT_FILE, missing=(
            f"no audit in {folder}: run `descend audit imagefolder:PATH` first, then review "
            f"the {AUDIT_FOLDER} folder it makes in PATH"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"{folder / AUDIT_FILE} is not a format-{FORMAT} audit (a newer "
                            "descend, or not an audit): run `descend audit` again")
        try:
            # The dataset around the audit's folder, even if it was moved since; else as written.
            root = folder.parent if folder.name == AUDIT_FOLDER else Path(doc["root"])
            audit = cls(folder, root, str(doc.get("data", "")),
                        tuple(str(c) for c in doc["classes"]),
                        tuple(Suspect(str(s["id"]), s["path"], str(s.get("split", "")),
                                      str(s["given"]), s.get("suggested"), str(s["kind"]),
                                      float(s["score"]),
                                      {str(k): float(v) for k, v in
                                       (s.get("probabilities") or {}).items()})
                              for s in doc["suspects"]),
                        tuple(Duplicate(str(d["id"]), d["a"], d["b"],
                                        tuple(str(x) for x in d.get("splits", ())),
                                        d.get("hash_distance"), d.get("cosine"))
                              for d in doc["duplicates"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{folder / AUDIT_FILE} is damaged ({type(e).__name__}: {e}): run "
                            "`descend audit` again") from None
        for path in audit.paths:
            if not _is_relative(path):
                raise DataError(f"{folder / AUDIT_FILE} names {path!r}, not a path inside the "
                                "dataset: run `descend audit` again")
        return audit


@dataclass(frozen=True)
class Decision:
    """What to do with one file: keep it, move it to class ``to``, or set it aside."""

    action: str
    to: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, **({"to": self.to} if self.to is not None else {})}


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
    doc = _read_json(file, missing="")
    try:
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']}")
        return {str(path): Decision(str(d["action"]), d.get("to"))
                for path, d in doc["decisions"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{file} is not a format-{FORMAT} decisions file ({e}): fix it, or "
                        "delete it to review again from the start") from None


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


def record_decision(audit: Audit, path: str, action: str, to: str | None = None) -> Decision:
    """Check the decision on ``path``, then write it (replacing any earlier one on it)."""
    decision = Decision(action, to)
    check_decision(audit, path, decision)
    with _writing:
        decisions = read_decisions(audit.folder)
        decisions[path] = decision
        _write(audit.folder, decisions)
    return decision


def forget_decision(audit: Audit, path: str) -> bool:
    """Take back the decision on ``path``; False if there was none."""
    with _writing:
        decisions = read_decisions(audit.folder)
        if decisions.pop(path, None) is None:
            return False
        _write(audit.folder, decisions)
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
        audit = Audit.load(folder)
        decisions = read_decisions(folder)
    except DataError as e:
        return f"note: the audit in {folder} cannot be read ({e})"
    left = unresolved(audit, decisions)
    pending = [p for p, d in decisions.items()
               if d.action != "keep" and (audit.root / p).is_file()]
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
    doc = {"format": FORMAT, "decisions": {p: d.to_json() for p, d in sorted(decisions.items())}}
    atomic_write_text(folder / DECISIONS_FILE, json.dumps(doc, indent=1) + "\n")


def _read_json(file: Path, missing: str) -> Any:
    try:
        return json.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {file} ({e}): fix or delete it") from None


def _is_relative(path: object) -> bool:
    """A plain relative path in ``/`` form with no ``..``: it stays inside the root."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and str(pure) == path
