from __future__ import annotations

from pathlib import Path

import pytest

from descend.crawl.manifest import Manifest, read_records
from descend.crawl.records import FetchedRecord, RejectedRecord, RunRecord
from descend.errors import DataError


def test_appends_survive_and_the_last_record_of_a_url_wins(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    m = Manifest(path)
    fetched = FetchedRecord(class_name="cat", url="u1", sha256="0" * 64, phash=0, width=40,
                            height=40, nbytes=900, staged=".staging/x.jpg")
    m.append(RunRecord(seed=0))
    m.append(fetched)
    m.append(fetched.kept(split="train", path="train/cat/x.jpg"))
    m.append(RejectedRecord(class_name="dog", url="u1", reason="duplicate-of:x",
                            permanent=True, fetched=True))
    m.close()
    history = Manifest(path).history()
    assert history.first_run is not None and history.first_run.seed == 0
    assert history.last[("cat", "u1")].status == "kept"
    assert history.last[("dog", "u1")].reason == "duplicate-of:x"


def test_a_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"status": "run"}\n{"status": "kept", "cla')
    assert read_records(path) == [RunRecord()]
    assert path.read_text() == '{"status": "run"}\n'
    m = Manifest(path)
    m.append(RunRecord())
    m.close()
    assert len(read_records(path)) == 2


def test_damage_in_the_middle_is_reported_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"status": "run"}\nnot json\n{"status": "run"}\n')
    with pytest.raises(DataError, match=r"manifest.jsonl:2"):
        read_records(path)


def test_url_records_missing_what_a_later_run_needs_are_skipped_with_the_line(
        tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(
        '{"status": "run"}\n'
        '{"status": "kept", "class": "cat", "url": "u1"}\n'
        '{"status": "rejected", "class": "cat", "url": "u2", "reason": "http-404",'
        ' "limit": "big"}\n'
        '{"status": "rejected", "class": "cat", "url": "u3", "reason": "http-404"}\n'
    )
    m = Manifest(path)
    m.close()
    assert m.records == [RunRecord(), RejectedRecord(class_name="cat", url="u3",
                                                     reason="http-404")]
    assert m.problems == ["manifest.jsonl:2: skipped a 'kept' record: it has no 'sha256'",
                          "manifest.jsonl:3: skipped a 'rejected' record: its 'limit' is not a "
                          "whole number"]
