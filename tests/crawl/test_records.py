from __future__ import annotations

import json
from pathlib import Path

import pytest

from descend.crawl import ClassSpec, CrawlConfig
from descend.crawl.manifest import Manifest
from descend.crawl.records import (
    FORMAT,
    BadRecord,
    FetchedRecord,
    KeptRecord,
    Record,
    RejectedRecord,
    RunRecord,
    SearchRecord,
    parse_record,
)
from descend.errors import DataError

SHA = "63" * 32
FETCHED = FetchedRecord(class_name="cat", url="http://x/1.jpg", sha256=SHA,
                        phash=0xFED818C8F313D4C4, width=96, height=80, nbytes=2423,
                        staged=".staging/6366105ea4faa1a4-1.jpg", final_url="http://x/2.jpg")
EVERY_KIND: list[Record] = [
    RunRecord.of(CrawlConfig([ClassSpec("cat", ("猫", "小猫")), ClassSpec("dog")], Path("out"))),
    SearchRecord(class_name="cat", word="猫", page=0, found=16, new=15, too_long=1),
    SearchRecord(class_name="cat", word="猫", page=1, reason="http-500"),
    FETCHED,
    FETCHED.kept(split="val", path="val/cat/6366105ea4faa1a4.jpg"),
    RejectedRecord(class_name="cat", url="http://x/3.png", reason="too-small:20x20",
                   permanent=True, fetched=True, limit=32, nbytes=1074),
    RejectedRecord(class_name="cat", url="http://x/4.jpg", reason="removed-by-user",
                   permanent=True, fetched=True, path="train/cat/0123456789abcdef.jpg"),
    RejectedRecord(class_name="dog", url="http://x/5.jpg", reason="timeout", permanent=False,
                   fetched=False),
]


@pytest.mark.parametrize("record", EVERY_KIND, ids=lambda r: type(r).__name__)
def test_every_record_reads_back_what_it_writes(record: Record) -> None:
    data = json.loads(json.dumps(record.to_json()))  # through the text a manifest holds
    assert data["status"] == record.status and list(data)[0] == "status"
    assert parse_record(data) == record
    assert type(record).from_json(data) == record


# Lines as the crawler wrote them before records were classes, one of each shape.
TODAY = [
    '{"status":"run","time":1.5,"format":1,"source":"baidu","val_fraction":0.2,"seed":0,'
    '"per_class":4,"classes":{"cat":["猫"],"dog":["狗","小狗"]}}',
    '{"status":"search","time":1.5,"class":"cat","word":"猫","page":0,"found":16,"new":15,'
    '"too_long":1}',
    '{"status":"search","time":1.5,"class":"cat","word":"猫","page":0,'
    '"reason":"too-large:5761>2000"}',
    '{"status":"fetched","time":1.5,"class":"cat","url":"WEB/moved","sha256":"' + SHA + '",'
    '"phash":"926bd3a10ab7c27a","width":96,"height":96,"bytes":2452,'
    '"staged":".staging/4128e112312cd508-84eb3549.jpg","final_url":"WEB/p9.jpg"}',
    '{"status":"kept","time":1.5,"class":"cat","url":"WEB/p2.jpg","sha256":"' + SHA + '",'
    '"phash":"bd4c9b8d075b9524","width":96,"height":96,"bytes":2454,"split":"val",'
    '"path":"val/cat/0dfe59c24cfb8c9c.jpg","staged":".staging/0dfe59c24cfb8c9c-162d7c9c.jpg"}',
    '{"status":"rejected","time":1.5,"class":"cat","url":"WEB/tiny.png",'
    '"reason":"too-small:20x20","permanent":true,"fetched":true,"limit":32,"bytes":1074}',
    '{"status":"rejected","time":1.5,"class":"cat","url":"WEB/p0.jpg",'
    '"reason":"removed-by-user","permanent":true,"fetched":true,'
    '"path":"train/cat/6366105ea4faa1a4.jpg"}',
    '{"status":"rejected","time":1.5,"class":"dog","url":"WEB/p0.jpg",'
    '"reason":"duplicate-of:' + SHA + '","permanent":true,"fetched":false}',
]


@pytest.mark.parametrize("line", TODAY, ids=lambda line: json.loads(line)["status"])
def test_a_line_in_the_existing_format_parses_and_is_written_back_the_same(line: str) -> None:
    data = json.loads(line)
    record = parse_record(data)
    again = {"status": data["status"], "time": data["time"], **record.to_json()}
    assert json.dumps(again, ensure_ascii=False, separators=(",", ":")) == line


def test_the_manifest_writes_a_record_as_one_line_with_its_time(tmp_path: Path) -> None:
    m = Manifest(tmp_path / "manifest.jsonl")
    m.append(EVERY_KIND[0])
    m.close()
    data = json.loads((tmp_path / "manifest.jsonl").read_text())
    assert list(data)[:3] == ["status", "time", "format"] and data["format"] == FORMAT
    assert data["classes"] == {"cat": ["猫", "小猫"], "dog": ["dog"]}


def test_lines_written_by_hand_lack_what_is_only_information() -> None:
    kept = parse_record({"status": "kept", "class": "cat", "url": "u", "sha256": SHA,
                         "phash": "ABCDEF0123456789", "split": "train", "path": "train/cat/x.jpg"})
    assert isinstance(kept, KeptRecord) and kept.width is None and kept.staged is None
    assert kept.phash == 0xABCDEF0123456789
    rejected = parse_record({"status": "rejected", "class": "cat", "url": "u",
                             "reason": "http-404"})
    assert rejected == RejectedRecord(class_name="cat", url="u", reason="http-404")
    assert not rejected.permanent  # as before: a rejection not marked permanent is retried
    assert parse_record({"status": "run"}) == RunRecord()


@pytest.mark.parametrize(("data", "reason"), [
    ({"status": "kept", "class": "cat", "url": "u", "split": "train"}, "it has no 'sha256'"),
    ({"status": "fetched", "class": "cat", "url": "u", "sha256": SHA}, "it has no 'phash'"),
    ({"status": "rejected", "class": "cat", "url": "u", "reason": 7},
     "its 'reason' is not a string"),
    ({"status": "rejected", "class": ["cat"], "url": "u", "reason": "x"},
     "its 'class' is not a string"),
    ({"status": "rejected", "class": "cat", "url": "u", "reason": "x", "limit": True},
     "its 'limit' is not a whole number"),
    ({"status": "rejected", "class": "cat", "url": "u", "reason": "x", "permanent": 1},
     "its 'permanent' is not true or false"),
    ({"status": "kept", "class": "cat", "url": "u", "sha256": SHA, "phash": "zz" * 8,
      "split": "train", "path": "p"}, "its 'phash' is not 16 hex digits"),
    ({"status": "kept", "class": "cat", "url": "u", "sha256": SHA, "phash": "0" * 16,
      "split": "test", "path": "p"}, "its 'split' is neither 'train' nor 'val'"),
    ({"status": "search", "class": "cat", "word": "猫"}, "it has no 'page'"),
    ({"status": "run", "seed": "0"}, "its 'seed' is not a whole number"),
    ({"status": "run", "classes": {"cat": "猫"}}, "its 'classes' are not lists of search words"),
    ({"status": "done"}, "no such status"),
    ({"status": ["kept"]}, "no such status"),
])
def test_a_malformed_record_is_refused_with_the_reason(data: dict, reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        parse_record(data)
    assert caught.value.reason == reason


def test_a_run_record_that_cannot_be_read_stops_the_crawl(tmp_path: Path) -> None:
    # Skipping it would let a later run's settings pass for the first run's, moving splits.
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"status": "run", "val_fraction": "0.2"}\n')
    with pytest.raises(DataError, match=r"manifest.jsonl:1 is a 'run' record .*val_fraction"):
        Manifest(path)
