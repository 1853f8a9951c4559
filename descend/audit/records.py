"""The files of an audit's folder as values: each record writes itself as JSON and reads itself
back.

``PATH/.descend-audit/`` holds ``audit.json`` (an `Audit`: its `Suspect`s and `Duplicate`s, the
`Method` behind them and a `Summary`), ``decisions.json`` (a `Decision` per file, by path) and
``applied.json`` (the `Move`s of `descend.audit.apply`). ``to_json`` gives what is written, with
every key, in the order the files have always had; ``from_json`` checks what it reads and raises
`DataError` saying what is wrong and what to do. A field that older or hand-written files lack
(an audit from before ``--from``, a test's findings) reads as None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

from descend.errors import DataError
from descend.jsonfields import Fields

# Each file's format; each is 1 since the audit began, and a reader refuses any other.
AUDIT_FORMAT = 1
DECISIONS_FORMAT = 1
JOURNAL_FORMAT = 1
AUDIT_FOLDER = ".descend-audit"  # in the dataset's root
AUDIT_FILE = "audit.json"
DECISIONS_FILE = "decisions.json"
JOURNAL_FILE = "applied.json"
KINDS = ("label", "outlier")  # of a suspect: a wrong label, or an image that fits no class
SPLITS = ("train", "val", "test")
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Suspect:
    """An image whose label looks wrong (kind "label") or that fits no class ("outlier").

    ``path`` is relative to the dataset's root, with ``/`` (None for a dataset without files);
    ``index`` is the image's place in the pool: train, then val, then test."""

    id: str
    path: str | None
    index: int | None = None
    split: str = ""
    given: str
    suggested: str | None  # the class it seems to be; None for an outlier
    kind: str
    score: float  # how sure the finding is, 0-1
    probabilities: Mapping[str, float]  # the top classes out of sample

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "index": self.index, "split": self.split,
                "given": self.given, "suggested": self.suggested, "kind": self.kind,
                "score": self.score, "probabilities": dict(self.probabilities)}

    @classmethod
    def from_json(cls, data: Any) -> Suspect:
        f = Fields(data, "a suspect")
        kind = f.need("kind", str)
        if kind not in KINDS:
            raise DataError(f"a suspect's kind is {kind[:40]!r}, not one of {', '.join(KINDS)}")
        return cls(id=f.need("id", str), path=f.may("path", str), index=f.may("index", int),
                   split=f.may("split", str) or "", given=f.need("given", str),
                   suggested=f.may("suggested", str), kind=kind,
                   score=float(f.need("score", float)),
                   probabilities={k: float(v) for k, v in
                                  (f.mapping("probabilities", float) or {}).items()})


@dataclass(frozen=True, kw_only=True)
class Duplicate:
    """Two images that are (nearly) the same, usually in different splits: a leak."""

    id: str
    a: str | None  # paths as a suspect's
    b: str | None
    index_a: int | None = None
    index_b: int | None = None
    splits: tuple[str, ...] = ()
    hash_distance: int | None = None  # bits between the perceptual hashes
    cosine: float | None = None  # of the embeddings

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "a": self.a, "b": self.b, "index_a": self.index_a,
                "index_b": self.index_b, "splits": list(self.splits),
                "hash_distance": self.hash_distance, "cosine": self.cosine}

    @classmethod
    def from_json(cls, data: Any) -> Duplicate:
        f = Fields(data, "a duplicate pair")
        cosine = f.may("cosine", float)
        return cls(id=f.need("id", str), a=f.may("a", str), b=f.may("b", str),
                   index_a=f.may("index_a", int), index_b=f.may("index_b", int),
                   splits=tuple(f.items("splits", str) or ()),
                   hash_distance=f.may("hash_distance", int),
                   cosine=None if cosine is None else float(cosine))


@dataclass(frozen=True, kw_only=True)
class Method:
    """How the out-of-sample probabilities were had: ``folds`` of cross-validation (None when
    the validation images of the run ``from_run`` were judged by its model), how many images
    were judged, and how well and how fast."""

    folds: int | None = None
    model: str | None = None
    from_run: str | None = None
    judged: int | None = None
    time_budget: str | None = None
    out_of_sample_accuracy: float | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"folds": self.folds, "model": self.model, "from_run": self.from_run,
                "judged": self.judged, "time_budget": self.time_budget,
                "out_of_sample_accuracy": self.out_of_sample_accuracy, "seconds": self.seconds}

    @classmethod
    def from_json(cls, data: Any) -> Method:
        f = Fields(data, "the method")
        return cls(folds=f.may("folds", int), model=f.may("model", str),
                   from_run=f.may("from_run", str), judged=f.may("judged", int),
                   time_budget=f.may("time_budget", str),
                   out_of_sample_accuracy=f.may("out_of_sample_accuracy", float),
                   seconds=f.may("seconds", float))


@dataclass(frozen=True, kw_only=True)
class StrayRule:
    """How the stray rule went (`descend.audit.findings.strays`): whether strays were judged
    and, where the model could be asked at all, its temperature, the median evenness, and the
    level and the gate it was held to. A rule never asked (one class, no image) is ``judged``
    alone, in its JSON too."""

    judged: bool
    temperature: float | None = None
    median_evenness: float | None = None
    level: float | None = None
    gate: float | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {"judged": self.judged, "temperature": self.temperature,
                  "median_evenness": self.median_evenness, "level": self.level,
                  "gate": self.gate}
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_json(cls, data: Any) -> StrayRule:
        f = Fields(data, "the stray rule")
        return cls(judged=f.need("judged", bool), temperature=f.may("temperature", float),
                   median_evenness=f.may("median_evenness", float),
                   level=f.may("level", float), gate=f.may("gate", float))


@dataclass(frozen=True, kw_only=True)
class Summary:
    """How many of each finding, in all (``suspects`` by kind) and per given class, and the
    share of labels confident learning estimates to be wrong."""

    images: int | None = None
    suspects: Mapping[str, int] | None = None
    duplicates: int | None = None
    label_noise_estimate: float | None = None
    per_class: Mapping[str, Mapping[str, int]] | None = None  # class: {"images", kinds...}
    stray_rule: StrayRule | None = None  # absent from audits older than the rule's gate

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images,
                "suspects": None if self.suspects is None else dict(self.suspects),
                "duplicates": self.duplicates, "label_noise_estimate": self.label_noise_estimate,
                "per_class": None if self.per_class is None else
                {c: dict(counts) for c, counts in self.per_class.items()},
                "stray_rule": None if self.stray_rule is None else self.stray_rule.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Summary:
        f = Fields(data, "the summary")
        per_class = f.mapping("per_class", dict)
        rule = f.may("stray_rule", dict)
        return cls(images=f.may("images", int), suspects=f.mapping("suspects", int),
                   duplicates=f.may("duplicates", int),
                   label_noise_estimate=f.may("label_noise_estimate", float),
                   per_class=None if per_class is None else
                   {c: Fields(counts, f"the summary of {c!r}").counts()
                    for c, counts in per_class.items()},
                   stray_rule=None if rule is None else StrayRule.from_json(rule))


@dataclass(frozen=True, kw_only=True)
class Audit:
    """What ``descend audit`` found in one dataset (``audit.json``): the suspects, most certain
    first, and the near-duplicate pairs, named by their paths relative to ``root``."""

    data: str  # the dataset's name, as given to descend audit
    root: str | None  # where the dataset was when audited; None for one without files
    created: str | None = None  # UTC, ISO 8601
    classes: tuple[str, ...]
    method: Method | None = None
    suspects: tuple[Suspect, ...]
    duplicates: tuple[Duplicate, ...]
    summary: Summary | None = None

    @property
    def paths(self) -> frozenset[str | None]:
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

    def to_json(self) -> dict[str, Any]:
        return {"format": AUDIT_FORMAT, "data": self.data, "root": self.root,
                "created": self.created, "classes": list(self.classes),
                "method": None if self.method is None else self.method.to_json(),
                "suspects": [s.to_json() for s in self.suspects],
                "duplicates": [d.to_json() for d in self.duplicates],
                "summary": None if self.summary is None else self.summary.to_json()}

    @classmethod
    def from_json(cls, data: Any, where: str = AUDIT_FILE) -> Audit:
        """The audit in ``data``, read from ``where``; `DataError` if it is not a format-1
        audit, is damaged, or names a path that leads outside the dataset."""
        if not isinstance(data, dict) or data.get("format") != AUDIT_FORMAT:
            raise DataError(f"{where} is not a format-{AUDIT_FORMAT} audit (a newer descend, or "
                            "not an audit): run `descend audit` again")
        try:
            f = Fields(data, "the file")
            method, summary = f.may("method", dict), f.may("summary", dict)
            audit = cls(data=f.may("data", str) or "", root=f.may("root", str),
                        created=f.may("created", str),
                        classes=tuple(f.items("classes", str, needed=True) or ()),
                        method=None if method is None else Method.from_json(method),
                        suspects=tuple(Suspect.from_json(s)
                                       for s in f.items("suspects", dict, needed=True) or ()),
                        duplicates=tuple(Duplicate.from_json(d)
                                         for d in f.items("duplicates", dict, needed=True) or ()),
                        summary=None if summary is None else Summary.from_json(summary))
        except DataError as e:
            raise DataError(f"{where} is damaged ({e}): run `descend audit` again") from None
        for path in audit.paths:
            if path is not None and not is_relative(path):
                raise DataError(f"{where} names {path!r}, not a path inside the dataset: run "
                                "`descend audit` again")
        return audit


@dataclass(frozen=True)
class Decision:
    """What to do with one file: keep it, move it to class ``to``, or set it aside (drop)."""

    action: str
    to: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, **({"to": self.to} if self.to is not None else {})}

    @classmethod
    def from_json(cls, data: Any) -> Decision:
        f = Fields(data, "a decision")
        return cls(f.need("action", str), f.may("to", str))


def decisions_to_json(decisions: Mapping[str, Decision]) -> dict[str, Any]:
    """``decisions.json``: the decisions by path, in the order of their paths."""
    return {"format": DECISIONS_FORMAT,
            "decisions": {p: d.to_json() for p, d in sorted(decisions.items())}}


def decisions_from_json(data: Any, where: str = DECISIONS_FILE) -> dict[str, Decision]:
    """The decisions in ``data``, read from ``where``; `DataError` if it is not a format-1
    decisions file."""
    try:
        f = Fields(data, "the file")
        if f.need("format", int) != DECISIONS_FORMAT:
            raise DataError(f"format {data['format']}")
        return {path: Decision.from_json(d)
                for path, d in (f.mapping("decisions", dict, needed=True) or {}).items()}
    except DataError as e:
        raise DataError(f"{where} is not a format-{DECISIONS_FORMAT} decisions file ({e}): fix "
                        "it, or delete it to review again from the start") from None


@dataclass(frozen=True)
class Move:
    """One file moved from ``source`` to ``target`` (paths relative to the dataset's root);
    ``made``: the folders the move created, deepest last, which undo removes again."""

    source: str
    target: str
    made: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"from": self.source, "to": self.target, "made": list(self.made)}

    @classmethod
    def from_json(cls, data: Any) -> Move:
        f = Fields(data, "a move")
        return cls(f.need("from", str), f.need("to", str), tuple(f.items("made", str) or ()))


def journal_to_json(moves: Iterable[Move]) -> dict[str, Any]:
    """``applied.json``: the moves of every apply not undone, in the order they were made."""
    return {"format": JOURNAL_FORMAT, "moves": [m.to_json() for m in moves]}


def journal_from_json(data: Any, where: str = JOURNAL_FILE) -> list[Move]:
    """The moves in ``data``, read from ``where``; `DataError` (`unreadable_journal`) if it is
    not a format-1 journal."""
    try:
        f = Fields(data, "the file")
        if f.need("format", int) != JOURNAL_FORMAT:
            raise DataError(f"format {data['format']}")
        return [Move.from_json(m) for m in f.items("moves", dict, needed=True) or ()]
    except DataError as e:
        raise unreadable_journal(where, e) from None


def unreadable_journal(where: str, why: Exception) -> DataError:
    """The error of a journal that cannot be read or used: undo needs it."""
    return DataError(f"cannot read the journal of applied moves {where} ({why}): it is needed "
                     "to undo them; restore it, or delete it to forget those moves")


def is_relative(path: object) -> bool:
    """A plain relative path in ``/`` form with no ``..``: it stays inside the root."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and str(pure) == path


