from __future__ import annotations

from pathlib import Path

import pytest

from descend.crawl import ClassSpec, CrawlConfig
from descend.crawl.address import AddressPolicy
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.folder import OutputFolder
from descend.crawl.manifest import Manifest, read_records
from descend.crawl.records import FetchedRecord, RejectedRecord, RunRecord
from descend.crawl.replay import check_settings, replay, still_rejects
from descend.crawl.report import ClassSummary
from descend.errors import ConfigError

CLOSED = AddressPolicy.for_crawl([], allow_private=False)


def _config(out: Path, **options: object) -> CrawlConfig:
    return CrawlConfig([ClassSpec("cat")], out, **options)  # type: ignore[arg-type]


def _rejected(reason: str, url: str = "http://example.com/x.jpg",
              limit: int | None = None) -> RejectedRecord:
    return RejectedRecord(class_name="cat", url=url, reason=reason, permanent=True,
                          fetched=True, limit=limit)


def _fetched(n: int) -> FetchedRecord:
    return FetchedRecord(class_name="cat", url=f"http://example.com/{n}.jpg", sha256=f"{n:064x}",
                         phash=n << 40, width=40, height=40, nbytes=900,
                         staged=f".staging/{n:016x}-tag.jpg")


def test_settings_that_decide_the_splits_must_stay(tmp_path: Path) -> None:
    first = RunRecord.of(_config(tmp_path))
    check_settings(None, _config(tmp_path, seed=3), tmp_path)
    check_settings(first, _config(tmp_path, per_class=500), tmp_path)
    with pytest.raises(ConfigError, match="--seed 0"):
        check_settings(first, _config(tmp_path, seed=3), tmp_path)
    with pytest.raises(ConfigError, match="--val-fraction 0.2"):
        check_settings(first, _config(tmp_path, val_fraction=0.5), tmp_path)


def test_a_rejection_holds_while_its_cause_does(tmp_path: Path) -> None:
    config = _config(tmp_path, max_bytes=1000, min_size=32)
    assert still_rejects(_rejected("too-large:>1000", limit=1000), config, CLOSED)
    assert not still_rejects(_rejected("too-large:>500", limit=500), config, CLOSED)
    assert still_rejects(_rejected("too-small:20x20", limit=32), config, CLOSED)
    assert not still_rejects(_rejected("too-small:20x20", limit=64), config, CLOSED)
    blocked = _rejected("blocked-address:10.0.0.1", url="http://10.0.0.1:8080/x.jpg")
    assert still_rejects(blocked, config, CLOSED)
    assert not still_rejects(blocked, config, AddressPolicy.for_crawl(["http://10.0.0.1:8080"],
                                                                      allow_private=False))
    assert not still_rejects(blocked, config, AddressPolicy.for_crawl([], allow_private=True))
    assert still_rejects(_rejected("http-404"), config, CLOSED)


def test_replay_rebuilds_what_is_known_and_repairs_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    folder = OutputFolder(out)
    in_place, half_moved, pruned, staged, vanished = (_fetched(n) for n in range(1, 6))
    records = [
        in_place.kept(split="train", path="train/cat/1.jpg"),
        half_moved.kept(split="val", path="val/cat/2.jpg"),  # killed before the move
        pruned.kept(split="train", path="train/cat/3.jpg"),  # deleted by a person
        staged,  # downloaded, not decided
        vanished,  # its staged file is gone: it will be downloaded again
        _rejected("http-404", url="http://example.com/gone.jpg"),
        RejectedRecord(class_name="cat", url="http://example.com/slow.jpg", reason="timeout"),
    ]
    (out / "train/cat").mkdir(parents=True)
    (out / "train/cat/1.jpg").write_bytes(b"1")
    for record in (half_moved, staged):
        (out / record.staged).write_bytes(b"s")
    (out / ".staging/.half-written.tmp").write_bytes(b"partial")
    earlier = Manifest(out / "manifest.jsonl")
    for record in records:
        earlier.append(record)
    earlier.close()
    manifest = Manifest(out / "manifest.jsonl")
    summary = ClassSummary("cat", 10)
    index = DuplicateIndex()
    try:
        known = replay(manifest.history(), manifest=manifest, config=_config(out),
                       folder=folder, policy=CLOSED, index=index, summaries={"cat": summary})
    finally:
        manifest.close()

    assert (summary.train, summary.val, summary.rejected["removed-by-user"]) == (1, 1, 1)
    assert (out / "val/cat/2.jpg").read_bytes() == b"s"  # the move finished
    assert known.kept == {in_place.url: in_place.sha256, half_moved.url: half_moved.sha256}
    assert known.final == {pruned.url: "removed-by-user", "http://example.com/gone.jpg": "http-404"}
    assert known.done == {("cat", r.url) for r in records[:3]} | {
        ("cat", "http://example.com/gone.jpg")}
    assert known.staged == {("cat", staged.url): staged}
    assert len(index) == 3  # the pruned picture too: its copies stay out
    assert sorted(p.name for p in folder.staging.iterdir()) == [Path(staged.staged).name]
    assert read_records(out / "manifest.jsonl")[-1] == RejectedRecord(
        class_name="cat", url=pruned.url, reason="removed-by-user", permanent=True,
        fetched=True, path="train/cat/3.jpg")
