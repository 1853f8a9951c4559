"""The whole crawl against a hostile web and a tampered output folder: every attack ends as a
noted failure of one page, URL or manifest line (or a one-line error), and the crawl goes on."""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from descend.crawl import ClassSpec, CrawlConfig, crawl
from descend.crawl.manifest import MANIFEST_NAME, UrlRecord, history_of, read_records
from descend.errors import DataError
from tests.support.fakeweb import FakeWeb, Route, gzipped_zeros, pictures

FAST = dict(timeout=2.0, retries=0, backoff=0.01, progress=False)


def _config(web: FakeWeb, out: Path, words: tuple[str, ...] = ("猫",),
            **options: Any) -> CrawlConfig:
    return CrawlConfig(classes=[ClassSpec("cat", words)], out=out, base_url=web.url,
                       **{**FAST, **options})


def _last(out: Path) -> dict[str, UrlRecord]:
    return {url: r for (_, url), r in history_of(read_records(out / MANIFEST_NAME)).last.items()}


def _images(out: Path) -> list[Path]:
    return sorted(p for split in ("train", "val") for p in (out / split).rglob("*.jpg"))


def test_a_gzip_bomb_image_and_search_page_are_too_large_in_bounded_memory(
        web: FakeWeb, tmp_path: Path) -> None:
    bomb = Route(gzip.compress(gzipped_zeros(1024)), headers={"Content-Encoding": "gzip, gzip"})
    assert len(bomb.body) < 4000  # 2.5 kB that would inflate to 1 GiB
    web.raw_pages["炸弹"] = bomb  # a search page that is a bomb
    good = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(3))]
    web.baidu["猫"] = [good[0], web.add("/bomb.jpg", bomb), *good[1:]]
    out = tmp_path / "out"
    tracemalloc.start()
    try:
        report = crawl(_config(web, out, ("炸弹", "猫"), per_class=3))  # the default 10 MiB cap
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # before: more than 2 GiB (the whole inflated gigabyte, and a copy)
    record = _last(out)[web.url + "/bomb.jpg"]
    assert record.status == "rejected" and record.reason == f"too-large:>{10 << 20}"
    assert any("'炸弹' page 0 failed: too-large" in note for note in report.classes[0].notes)
    assert report.classes[0].kept == 3 and len(_images(out)) == 3


def test_deeply_nested_or_huge_number_json_fails_that_page_only(web: FakeWeb,
                                                                tmp_path: Path) -> None:
    web.raw_pages["深"] = Route(b"[" * 200_000 + b"]" * 200_000, content_type="application/json")
    web.raw_pages["长"] = Route(b'{"data": {"images": [{"thumburl": 1' + b"1" * 5000 + b"}]}}",
                               content_type="application/json")
    web.baidu["猫"] = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(2))]
    # One image short of per_class, so that every word is searched.
    report = crawl(_config(web, tmp_path / "baidu", ("深", "长", "猫"), per_class=3))
    notes = report.classes[0].notes
    assert any("'深' page 0 failed: json-too-deep" in n for n in notes), notes
    assert any("'长' page 0 failed: json-number-too-long" in n for n in notes), notes
    assert report.classes[0].kept == 2

    deep_link = '{"murl": ' + "[" * 100_000 + "]" * 100_000 + "}"
    web.raw_pages["deep"] = Route(
        f"<a class='iusc' m='{deep_link}'></a>".encode(), content_type="text/html")
    web.bing["cat"] = [web.add(f"/q{i}.jpg", b) for i, b in enumerate(pictures(2, start=10))]
    report = crawl(_config(web, tmp_path / "bing", ("deep", "cat"), per_class=2, source="bing"))
    assert any("'deep' page 0 failed: json-too-deep" in n for n in report.classes[0].notes)
    assert report.classes[0].kept == 2


def test_urls_that_would_break_the_manifest_are_kept_out_or_survive_it(web: FakeWeb,
                                                                      tmp_path: Path) -> None:
    imgs = pictures(4)
    # U+2028 and U+0085 are line breaks to str.splitlines and json.dumps writes them as they
    # are: a URL holding one used to split its record, and every later run stopped on it.
    odd = [web.url + "/a\u2028b.jpg", web.url + "/c\x85d.jpg"]
    too_long = web.url + "/" + "x" * 5000 + ".jpg"
    web.baidu["猫"] = [*odd, too_long, *(web.add(f"/p{i}.jpg", b) for i, b in enumerate(imgs))]
    out = tmp_path / "out"
    first = crawl(_config(web, out, per_class=2))
    assert first.classes[0].kept == 2
    last = _last(out)
    assert all(last[u].reason == "http-404" for u in odd)  # recorded, line breaks and all
    assert too_long not in last and not any(len(r) > 4096 for r in web.requests)
    search = [r for r in read_records(out / MANIFEST_NAME) if r.status == "search"]
    assert search[0].too_long == 1
    second = crawl(_config(web, out, per_class=4))  # reads that manifest back
    assert second.classes[0].kept == 4 and second.notes == []


def test_manifest_lines_without_needed_fields_are_skipped_and_named(web: FakeWeb,
                                                                    tmp_path: Path) -> None:
    imgs = pictures(3)
    urls = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(imgs)]
    web.baidu["猫"] = urls
    out = tmp_path / "out"
    crawl(_config(web, out, per_class=1))
    path = out / MANIFEST_NAME
    valid = [json.loads(line) for line in path.read_text().splitlines()]
    run = next(r for r in valid if r["status"] == "run")
    planted = [
        {"status": "kept", "class": "cat", "url": urls[1], "split": "train"},  # no sha256...
        {"status": "fetched", "class": "cat", "url": urls[2], "sha256": "0" * 64},
        {"status": "rejected", "class": "cat", "url": "http://x/1.jpg", "reason": 7},
        {"status": "rejected", "class": ["cat"], "url": "http://x/2.jpg", "reason": "http-404"},
        {"status": "kept", "class": "cat", "url": "http://x/3.jpg", "sha256": "0" * 64,
         "phash": "zz" * 8, "split": "train", "path": "train/cat/x.jpg"},
        {"status": "kept", "class": "cat", "url": "http://x/4.jpg", "sha256": "0" * 64,
         "phash": "0" * 16, "split": "name", "path": "train/cat/x.jpg"},
    ]
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in planted)
    report = crawl(_config(web, out, per_class=3))
    assert report.classes[0].kept == 3 and len(_images(out)) == 3
    assert len(report.notes) == len(planted)
    first_line = len(valid) + 1
    assert report.notes[0] == f"{MANIFEST_NAME}:{first_line}: skipped a 'kept' record: it has no " \
                              "'sha256'"
    text = report.format()
    assert "'reason' is not a str" in text and "'class' is not a str" in text
    assert "'phash' is not 16 hex digits" in text and "'split' is neither" in text
    assert run["seed"] == 0  # the run record itself was left alone


def test_a_manifest_line_nested_too_deep_is_a_one_line_error(web: FakeWeb,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text('{"status": "run"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:2 is not a JSON record"):
        crawl(_config(web, out, per_class=1))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
@pytest.mark.parametrize("name", [".crawl.lock", MANIFEST_NAME])
def test_a_planted_link_is_refused_and_its_target_left_alone(web: FakeWeb, tmp_path: Path,
                                                             name: str) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    web.baidu["猫"] = [web.add("/p.jpg", pictures(1)[0])]
    with pytest.raises(DataError, match="is a symbolic link"):
        crawl(_config(web, out, per_class=1))
    assert victim.read_text() == "do not truncate me\n"
    assert web.requests == []

    (out / name).unlink()
    os.mkfifo(out / name)  # a FIFO would block a plain open forever
    with pytest.raises(DataError, match="not a plain file"):
        crawl(_config(web, out, per_class=1))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_planted_staging_link_cannot_empty_another_folder(web: FakeWeb,
                                                            tmp_path: Path) -> None:
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    (elsewhere / "holiday.jpg").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".staging").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DataError, match="not a plain folder"):
        crawl(_config(web, out, per_class=1))
    assert (elsewhere / "holiday.jpg").read_bytes() == b"precious"
