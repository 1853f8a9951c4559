"""The crawl's memory: ``OUT/manifest.jsonl``, one JSON record per line, appended and fsynced.

Statuses: ``run`` (settings of each invocation), ``search`` (one results page), ``fetched``
(downloaded, cleaned and staged, not yet decided), ``kept`` (with sha256, phash, path and
split) and ``rejected`` (with a reason and whether the rejection is ``permanent``). The last
record of a (class, URL) pair is its state. Each record is one line written and flushed to
the operating system at once, so a killed process loses nothing and can only tear the line
being written, which the next run cuts off before appending. `sync` (fsync) makes records
durable against a system crash too; the crawler calls it once per batch of records, not per
record, since one fsync costs as much as a whole image's decoding.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descend.errors import DataError

MANIFEST_NAME = "manifest.jsonl"
FORMAT = 1
URL_STATUSES = ("fetched", "kept", "rejected")

Record = dict[str, Any]


@dataclass
class History:
    """What earlier runs left: the first run's settings and the state of every (class, URL)."""

    first_run: Record | None = None
    last: dict[tuple[str, str], Record] = field(default_factory=dict)


class Manifest:
    """An append-only JSONL file: `append` writes and flushes a record, `sync` fsyncs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = read_records(path)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._unsynced = False

    def history(self) -> History:
        return history_of(self.records)

    def append(self, record: Record) -> None:
        record = {"status": record["status"], "time": round(time.time(), 3), **record}
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        self._unsynced = True

    def sync(self) -> None:
        """Make every record appended so far durable (no-op if there is none)."""
        if self._unsynced:
            os.fsync(self._file.fileno())
            self._unsynced = False

    def close(self) -> None:
        self.sync()
        self._file.close()


def history_of(records: list[Record]) -> History:
    """The first run's settings and the last record of every (class, URL)."""
    history = History()
    for record in records:
        status = record.get("status")
        if status == "run" and history.first_run is None:
            history.first_run = record
        elif status in URL_STATUSES:
            history.last[(record["class"], record["url"])] = record
    return history


def read_records(path: Path) -> list[Record]:
    """Every complete record of ``path`` (none if it does not exist); cuts a torn last line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        # A kill while appending: drop the partial line so the next append starts clean.
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    records = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(
                f"{path}:{number} is not a JSON record; the manifest was edited or damaged: "
                "fix or delete that line, or crawl into a new --out"
            ) from None
        if not isinstance(record, dict) or "status" not in record:
            raise DataError(f"{path}:{number} is not a crawl manifest record")
        if record["status"] in URL_STATUSES and not {"class", "url"} <= record.keys():
            raise DataError(f"{path}:{number}: a {record['status']} record needs class and url")
        records.append(record)
    return records
