"""The crawl's memory: ``OUT/manifest.jsonl``, one JSON record per line, appended and fsynced.

Statuses: ``run`` (settings of each invocation), ``search`` (one results page), ``fetched``
(downloaded, cleaned and staged, not yet decided), ``kept`` (with sha256, phash, path and
split) and ``rejected`` (with a reason and whether the rejection is ``permanent``); each is a
typed record of `descend.crawl.records`. The last record of a (class, URL) pair is its state.
Each record is one line written and flushed to the operating system at once, so a killed
process loses nothing and can only tear the line being written, which the next run cuts off
before appending. A record without the fields a later run needs (edited by hand, or written by
a broken tool) is skipped and named in the crawl report, not trusted: at worst that URL is
fetched again; only a ``run`` record is never skipped, since the first one decides the splits.
`sync` (fsync) makes records durable against a system crash too; the crawler calls it once per
batch of records, not per record, since one fsync costs as much as a whole image's decoding.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from descend.crawl.records import (
    FORMAT,
    BadRecord,
    Record,
    RunRecord,
    SearchRecord,
    UrlRecord,
    parse_record,
)
from descend.errors import DataError

MANIFEST_NAME = "manifest.jsonl"

__all__ = ["FORMAT", "MANIFEST_NAME", "History", "Manifest", "Record", "UrlRecord",
           "history_of", "open_plain_file", "read_records"]


@dataclass
class History:
    """What earlier runs left: the first run's settings and the state of every (class, URL)."""

    first_run: RunRecord | None = None
    last: dict[tuple[str, str], UrlRecord] = field(default_factory=dict)


class Manifest:
    """An append-only JSONL file: `append` writes and flushes a record, `sync` fsyncs.

    ``records`` are the usable records already there; ``problems`` say which lines were
    skipped (a record without the fields a later run needs) and why.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = open_plain_file(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, "the manifest")
        try:
            self.records, self.problems = _read(self._fd, path)
        except BaseException:
            os.close(self._fd)
            raise
        self._unsynced = False

    def history(self) -> History:
        return history_of(self.records)

    def append(self, record: Record) -> None:
        data = {"status": record.status, "time": round(time.time(), 3), **record.to_json()}
        line = (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        # One write per record (O_APPEND puts it at the end); a short write only on a full disk.
        while line:
            line = line[os.write(self._fd, line):]
        self._unsynced = True

    def sync(self) -> None:
        """Make every record appended so far durable (no-op if there is none)."""
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self._fd)


def open_plain_file(path: Path, flags: int, what: str) -> int:
    """A descriptor for ``path``, refusing a symbolic link or anything but a regular file.

    Someone who can write into the output folder could otherwise plant ``manifest.jsonl`` or
    the lock file as a link to another file, which the crawl would then append to or truncate.
    ``O_NOFOLLOW`` refuses the link in the same call that opens (no check-then-open race) and
    ``O_NONBLOCK`` keeps a planted FIFO from hanging the open; never ``O_TRUNC``.
    """
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise DataError(f"{what} {path} is a symbolic link; a crawl writes only to a plain "
                            "file there: remove the link, or crawl into a new --out") from None
        raise DataError(f"cannot open {what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"{what} {path} is not a plain file; remove it, or crawl into a new --out")
    return fd


def history_of(records: Iterable[Record]) -> History:
    """The first run's settings and the last record of every (class, URL)."""
    history = History()
    for record in records:
        if isinstance(record, RunRecord):
            if history.first_run is None:
                history.first_run = record
        elif not isinstance(record, SearchRecord):
            history.last[(record.class_name, record.url)] = record
    return history


def read_records(path: Path) -> list[Record]:
    """Every usable record of ``path`` (none if it does not exist); cuts a torn last line."""
    if not os.path.lexists(path):
        return []
    fd = open_plain_file(path, os.O_RDWR, "the manifest")
    try:
        return _read(fd, path)[0]
    finally:
        os.close(fd)


def _read(fd: int, path: Path) -> tuple[list[Record], list[str]]:
    os.lseek(fd, 0, os.SEEK_SET)  # writes still go to the end: the file is open O_APPEND
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    data = b"".join(chunks)
    if data and not data.endswith(b"\n"):
        # A kill while appending: drop the partial line so the next append starts clean.
        keep = data.rfind(b"\n") + 1
        os.ftruncate(fd, keep)
        data = data[:keep]
    records: list[Record] = []
    problems: list[str] = []
    # Split on "\n" only: str.splitlines would also split inside a record at U+2028 or U+0085,
    # which json.dumps writes as they are and which a server can put into any URL.
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError, too deep, too long a number
            raise DataError(
                f"{path}:{number} is not a JSON record; the manifest was edited or damaged: "
                "fix or delete that line, or crawl into a new --out"
            ) from None
        if not isinstance(obj, dict) or "status" not in obj:
            raise DataError(f"{path}:{number} is not a crawl manifest record")
        try:
            records.append(parse_record(obj))
        except BadRecord as e:
            if obj["status"] == RunRecord.status:
                raise DataError(f"{path}:{number} is a 'run' record that cannot be read "
                                f"({e.reason}); fix or delete that line") from None
            problems.append(f"{path.name}:{number}: skipped a {obj['status']!r} record: "
                            f"{e.reason}")
    return records, problems
