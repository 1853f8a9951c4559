"""Resuming: what earlier runs decided, rebuilt from the manifest, and OUT repaired to match.

The last record of each (class, URL) says where it stands:

- ``kept``: the image counts for its class and joins the duplicate index. A move that a kill
  interrupted is finished; a file deleted by hand is recorded as ``removed-by-user`` and stays
  out, and so do its copies: the class is topped up with other images.
- ``rejected``: a permanent rejection holds while what caused it does (see `still_rejects`);
  any other is tried again.
- ``fetched``: the staged file, if still there, is decided without downloading it again.

Staged files that no record points to (partial writes) are deleted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from descend.crawl.address import AddressPolicy, origin
from descend.crawl.config import CrawlConfig
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.folder import OutputFolder
from descend.crawl.manifest import History, Manifest
from descend.crawl.records import FetchedRecord, KeptRecord, RejectedRecord, RunRecord
from descend.crawl.report import ClassSummary
from descend.errors import ConfigError

REMOVED = "removed-by-user"


@dataclass
class Known:
    """What the crawl knows about URLs without downloading them: what earlier runs decided,
    rebuilt by `replay`, and then what this run decides."""

    kept: dict[str, str] = field(default_factory=dict)  # URL -> sha256 of the image kept from it
    final: dict[str, str] = field(default_factory=dict)  # URL -> a permanent rejection reason
    done: set[tuple[str, str]] = field(default_factory=set)  # (class, URL) decided earlier
    staged: dict[tuple[str, str], FetchedRecord] = field(default_factory=dict)  # not decided


def replay(history: History, *, manifest: Manifest, config: CrawlConfig, folder: OutputFolder,
           policy: AddressPolicy, index: DuplicateIndex,
           summaries: Mapping[str, ClassSummary]) -> Known:
    """What ``history`` says about every (class, URL), with kept images added to ``index`` and
    counted in ``summaries``; kept files restored, removals recorded, stray staged files gone."""
    check_settings(history.first_run, config, folder.out)
    known = Known()
    referenced: set[Path] = set()
    for (name, url), record in history.last.items():
        if isinstance(record, KeptRecord):
            index.add(record.sha256, record.phash)
            known.done.add((name, url))
            summary = summaries.get(name)
            if restore_kept(record, folder):
                known.kept[url] = record.sha256
                if summary is not None:
                    summary.count_kept(record.split)
                continue
            # Deleted by hand (a wrong or bad picture): it stays out, and so do its copies.
            manifest.append(RejectedRecord(class_name=name, url=url, reason=REMOVED,
                                           permanent=True, fetched=True, path=record.path))
            known.final[url] = REMOVED
            if summary is not None:
                summary.rejected[REMOVED] += 1
        elif isinstance(record, RejectedRecord):
            if record.permanent and still_rejects(record, config, policy):
                known.done.add((name, url))
                known.final[url] = record.reason
        else:
            staged = folder.inside(record.staged)
            if staged.is_file():
                referenced.add(staged)
                known.staged[(name, url)] = record
    folder.clear_staging(keep=referenced)
    return known


def check_settings(first: RunRecord | None, config: CrawlConfig, out: Path) -> None:
    """`ConfigError` unless ``config`` keeps the first run's settings that decide the splits."""
    if first is None:
        return
    for flag, was, now in (("--val-fraction", first.val_fraction, config.val_fraction),
                           ("--seed", first.seed, config.seed)):
        if was != now:
            raise ConfigError(
                f"{out} was crawled with {flag} {was}; a different value would move images "
                f"between splits: use {flag} {was} or a new --out"
            )


def restore_kept(record: KeptRecord, folder: OutputFolder) -> bool:
    """True if the kept file is in place, finishing a move that a kill interrupted; False if it
    is gone from both places, which only a person (or another program) can do."""
    final = folder.inside(record.path)
    if final.is_file():
        return True
    staged = folder.inside(record.staged) if record.staged else None
    if staged is not None and staged.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        return True
    return False


def still_rejects(record: RejectedRecord, config: CrawlConfig, policy: AddressPolicy) -> bool:
    """A size rejection stands only while the limit that caused it does, an address rejection
    only while the address policy has not been opened up for it."""
    kind, limit = record.kind, record.limit
    if kind == "blocked-address":
        try:
            return not policy.trusts(*origin(record.url))
        except (httpx.InvalidURL, KeyError, UnicodeError):
            return not policy.allow_private
    if kind == "too-large" and limit is not None:
        return config.max_bytes <= limit
    if kind == "too-small" and limit is not None:
        return config.min_size >= limit
    return True
