"""The manifest's records as values: each writes itself as one JSON object and reads itself back.

One frozen dataclass per status. ``to_json`` gives the object written on the record's line (the
manifest adds the time); `parse_record` turns a line's object back into its record, or raises
`BadRecord` saying what a later run would miss in it. Keys, their order and the status names are
the manifest's format (``FORMAT`` in `descend.crawl.manifest`): crawl folders written before
these classes existed read back unchanged. A field a record may lack is None, and absent from
its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from descend.crawl.config import CrawlConfig
from descend.jsonfields import Fields

FORMAT = 1  # of the manifest: the statuses and keys written below
SPLITS = ("train", "val")
_PHASH = re.compile(r"[0-9a-fA-F]{16}")
T = TypeVar("T")


class BadRecord(Exception):
    """A manifest line that a later run cannot use; ``reason`` says why ("it has no 'sha256'")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """The settings of one invocation. The first run's ``val_fraction`` and ``seed`` bind every
    later run, since they decide the splits; the other fields are information."""

    status: ClassVar[str] = "run"
    format: int | None = None
    source: str | None = None
    val_fraction: float | None = None
    seed: int | None = None
    per_class: int | None = None
    classes: Mapping[str, tuple[str, ...]] | None = None  # class -> its search words

    @classmethod
    def of(cls, config: CrawlConfig) -> RunRecord:
        return cls(format=FORMAT, source=config.source, val_fraction=config.val_fraction,
                   seed=config.seed, per_class=config.per_class,
                   classes={c.name: c.words for c in config.classes})

    def to_json(self) -> dict[str, Any]:
        classes = None if self.classes is None else {k: list(v) for k, v in self.classes.items()}
        return _present({"status": self.status, "format": self.format, "source": self.source,
                         "val_fraction": self.val_fraction, "seed": self.seed,
                         "per_class": self.per_class, "classes": classes})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        f = _Fields(data)
        classes = f.may("classes", dict)
        if classes is not None and not all(
            isinstance(words, list) and all(isinstance(w, str) for w in words)
            for words in classes.values()
        ):
            raise BadRecord("its 'classes' are not lists of search words")
        return cls(format=f.may("format", int), source=f.may("source", str),
                   val_fraction=f.may("val_fraction", float), seed=f.may("seed", int),
                   per_class=f.may("per_class", int),
                   classes=None if classes is None else {k: tuple(v) for k, v in classes.items()})


@dataclass(frozen=True, kw_only=True)
class SearchRecord:
    """One results page: how many URLs it gave (``found``), how many were new to the class and
    how many were too long to use; or, for a page that failed, why (``reason``)."""

    status: ClassVar[str] = "search"
    class_name: str
    word: str
    page: int
    found: int | None = None
    new: int | None = None
    too_long: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _present({"status": self.status, "class": self.class_name, "word": self.word,
                         "page": self.page, "found": self.found, "new": self.new,
                         "too_long": self.too_long, "reason": self.reason})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchRecord:
        f = _Fields(data)
        return cls(class_name=f.need("class", str), word=f.need("word", str),
                   page=f.need("page", int), found=f.may("found", int), new=f.may("new", int),
                   too_long=f.may("too_long", int), reason=f.may("reason", str))


@dataclass(frozen=True, kw_only=True)
class FetchedRecord:
    """Downloaded, cleaned and staged in ``OUT/.staging``; its keep-or-drop decision is to come.

    A later run decides on the staged file, if it is still there, without downloading again.
    """

    status: ClassVar[str] = "fetched"
    class_name: str
    url: str
    sha256: str
    phash: int
    width: int
    height: int
    nbytes: int  # the body as downloaded
    staged: str  # path relative to OUT
    final_url: str | None = None  # where redirects led, if elsewhere

    def to_json(self) -> dict[str, Any]:
        return _present({"status": self.status, "class": self.class_name, "url": self.url,
                         "sha256": self.sha256, "phash": _hex(self.phash), "width": self.width,
                         "height": self.height, "bytes": self.nbytes, "staged": self.staged,
                         "final_url": self.final_url})

    def kept(self, *, split: str, path: str) -> KeptRecord:
        """The record of keeping this image at ``path``, in ``split``."""
        return KeptRecord(class_name=self.class_name, url=self.url, sha256=self.sha256,
                          phash=self.phash, width=self.width, height=self.height,
                          nbytes=self.nbytes, split=split, path=path, staged=self.staged)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FetchedRecord:
        f = _Fields(data)
        return cls(class_name=f.need("class", str), url=f.need("url", str),
                   sha256=f.need("sha256", str), phash=f.phash(), width=f.need("width", int),
                   height=f.need("height", int), nbytes=f.need("bytes", int),
                   staged=f.need("staged", str), final_url=f.may("final_url", str))


@dataclass(frozen=True, kw_only=True)
class KeptRecord:
    """Kept at ``path`` (``split/class/sha.jpg`` under OUT). ``staged`` is where it waited: a
    kill between this record and the move leaves it there, and the next run finishes the move.
    Size fields are information, absent from lines written by hand."""

    status: ClassVar[str] = "kept"
    class_name: str
    url: str
    sha256: str
    phash: int
    split: str  # "train" or "val", decided once
    path: str
    width: int | None = None
    height: int | None = None
    nbytes: int | None = None
    staged: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _present({"status": self.status, "class": self.class_name, "url": self.url,
                         "sha256": self.sha256, "phash": _hex(self.phash), "width": self.width,
                         "height": self.height, "bytes": self.nbytes, "split": self.split,
                         "path": self.path, "staged": self.staged})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeptRecord:
        f = _Fields(data)
        record = cls(class_name=f.need("class", str), url=f.need("url", str),
                     sha256=f.need("sha256", str), phash=f.phash(), path=f.need("path", str),
                     split=f.need("split", str), width=f.may("width", int),
                     height=f.may("height", int), nbytes=f.may("bytes", int),
                     staged=f.may("staged", str))
        if record.split not in SPLITS:
            raise BadRecord("its 'split' is neither 'train' nor 'val'")
        return record


@dataclass(frozen=True, kw_only=True)
class RejectedRecord:
    """Not kept, and why: ``reason`` is ``kind`` or ``kind:detail``. A ``permanent`` rejection
    holds for later runs (unless the ``limit`` that caused it is raised); another is retried.
    ``fetched`` says whether the body was downloaded; ``path`` names the file a person removed."""

    status: ClassVar[str] = "rejected"
    class_name: str
    url: str
    reason: str
    permanent: bool = False  # a line without it is retried, as it always was
    fetched: bool = False
    limit: int | None = None
    nbytes: int | None = None
    path: str | None = None

    @property
    def kind(self) -> str:
        """The reason without its detail: ``too-large:>10485760`` -> ``too-large``."""
        return self.reason.split(":")[0]

    def to_json(self) -> dict[str, Any]:
        return _present({"status": self.status, "class": self.class_name, "url": self.url,
                         "reason": self.reason, "permanent": self.permanent,
                         "fetched": self.fetched, "limit": self.limit, "bytes": self.nbytes,
                         "path": self.path})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RejectedRecord:
        f = _Fields(data)
        return cls(class_name=f.need("class", str), url=f.need("url", str),
                   reason=f.need("reason", str), permanent=f.may("permanent", bool) or False,
                   fetched=f.may("fetched", bool) or False, limit=f.may("limit", int),
                   nbytes=f.may("bytes", int), path=f.may("path", str))


UrlRecord = FetchedRecord | KeptRecord | RejectedRecord
Record = RunRecord | SearchRecord | UrlRecord
RECORD_TYPES: dict[str, type[Record]] = {
    kind.status: kind
    for kind in (RunRecord, SearchRecord, FetchedRecord, KeptRecord, RejectedRecord)
}


def parse_record(data: Mapping[str, Any]) -> Record:
    """The record a manifest line's object holds; `BadRecord` if a later run cannot use it."""
    status = data.get("status")
    kind = RECORD_TYPES.get(status) if isinstance(status, str) else None
    if kind is None:
        raise BadRecord("no such status")
    return kind.from_json(data)


class _Fields(Fields):
    """A manifest record's fields (`descend.jsonfields`); the first missing or mistyped one is a
    `BadRecord`."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data, "it", BadRecord)

    def phash(self) -> int:
        text = self.need("phash", str)
        if not _PHASH.fullmatch(text):
            raise BadRecord("its 'phash' is not 16 hex digits")
        return int(text, 16)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that have a value, in the order given: the manifest's key order."""
    return {key: value for key, value in fields.items() if value is not None}


def _hex(phash: int) -> str:
    return f"{phash:016x}"
