"""The whole crawl against the local fake web: every kind of bad answer ends as it should."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import imagehash
import pytest
from PIL import Image

from descend.crawl import ClassSpec, CrawlConfig, crawl
from descend.crawl.decode import clean_image
from descend.crawl.dedup import hamming
from descend.crawl.folder import STAGING, OutputFolder
from descend.crawl.manifest import MANIFEST_NAME, Record, UrlRecord, history_of, read_records
from descend.errors import ConfigError
from tests.support.fakeweb import FakeWeb, Route, jpeg, picture, pictures, png


def read_manifest(out: Path) -> list[Record]:
    return read_records(out / MANIFEST_NAME)


def last_by_url(out: Path, cls: str) -> dict[str, UrlRecord]:
    """URL -> the last fetched/kept/rejected record of class ``cls``."""
    return {url: r for (c, url), r in history_of(read_manifest(out)).last.items() if c == cls}


def output_files(out: Path) -> list[Path]:
    """Every file under OUT/train and OUT/val."""
    return sorted(p for split in ("train", "val") for p in (out / split).rglob("*") if p.is_file())


FAST = dict(timeout=0.4, retries=3, backoff=0.01, max_retry_after=0.2, progress=False)


def _config(web: FakeWeb, out: Path, classes: list[ClassSpec], **options: Any) -> CrawlConfig:
    return CrawlConfig(classes=classes, out=out, base_url=web.url, **{**FAST, **options})


def _zoo(web: FakeWeb) -> dict[str, str]:
    """A result list for 猫 with every kind of answer; name -> URL."""
    good = pictures(8)
    u: dict[str, str] = {f"good{i}": web.add(f"/good{i}.jpg", b) for i, b in enumerate(good)}
    near = Image.open(io.BytesIO(good[1])).resize((80, 80))
    rgba = picture(20).convert("RGBA")
    rgba.putalpha(128)
    cmyk = io.BytesIO()
    picture(21).convert("CMYK").save(cmyk, "JPEG")
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    noisy = png(Image.effect_noise((200, 200), 100).convert("RGB"))  # ~100 kB, incompressible
    assert len(noisy) > 60_000
    u.update({
        "exact": web.add("/exact-copy.jpg", good[0]),
        "near": web.add("/near-copy.jpg", jpeg(near, quality=60)),
        "html": web.add("/error.jpg", Route(b"<html><body>403</body></html>",
                                             content_type="text/html")),
        "truncated": web.add("/truncated.jpg", jpeg(picture(30))[:600]),
        "tiny": web.add("/tiny.png", png(picture(31, size=(20, 20)))),
        "large": web.add("/large.png", noisy),
        "large-chunked": web.add("/large-chunked.png", Route(noisy, chunked=True)),
        "slow": web.add("/slow.jpg", Route(jpeg(picture(32)), delay=2.0)),
        "429": web.add("/busy.jpg", Route(jpeg(picture(33)), failures=[429], retry_after="5")),
        "500x3": web.add("/flaky.jpg", Route(jpeg(picture(34)), failures=[500, 500, 500])),
        "loop": web.add("/loop1", Route(status=302, headers={"Location": "/loop2"})),
        "to-file": web.add("/to-file", Route(status=302, headers={"Location": "file:///etc/passwd"})),
        "redirect": web.add("/moved", Route(status=301, headers={"Location": "/moved-here.jpg"})),
        "404": web.url + "/gone.jpg",
        "ftp": "ftp://example.com/cat.jpg",
        "data": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ",
        "bomb": web.add("/bomb.png", bomb.getvalue()),
        "rgba": web.add("/rgba.png", png(rgba)),
        "cmyk": web.add("/cmyk.jpg", cmyk.getvalue()),
    })
    web.add("/loop2", Route(status=302, headers={"Location": "/loop1"}))
    web.add("/moved-here.jpg", jpeg(picture(35)))
    return u


def test_every_kind_of_answer_ends_as_expected(web: FakeWeb, tmp_path: Path) -> None:
    u = _zoo(web)
    listed = list(u.values())
    web.baidu["猫"] = listed[:10] + [u["good3"]] + listed[10:]  # one URL listed twice
    dog = pictures(4, start=100)
    dog_urls = [web.add(f"/dog{i}.jpg", b) for i, b in enumerate(dog)]
    # Under 狗 too: a URL kept for cat, and a copy of a cat picture at a new URL.
    web.baidu["狗"] = [u["good2"], *dog_urls, web.add("/dog-copy.jpg", pictures(8)[5])]
    out = tmp_path / "pets"
    report = crawl(_config(web, out, [ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))],
                           per_class=50, max_bytes=60_000))

    cat, dog_last = last_by_url(out, "cat"), last_by_url(out, "dog")
    kept = {n for n, url in u.items() if cat[url].status == "kept"}
    assert kept == {f"good{i}" for i in range(8)} | {"429", "500x3", "redirect", "rgba", "cmyk"}
    expected = {
        "exact": "duplicate-of:" + cat[u["good0"]].sha256,
        "near": "duplicate-of:" + cat[u["good1"]].sha256,
        "html": "not-an-image:text/html",
        "tiny": "too-small:20x20",
        "large": "too-large:",
        "large-chunked": "too-large:>60000",
        "slow": "timeout",
        "loop": "too-many-redirects",
        "to-file": "bad-redirect:file",
        "404": "http-404",
        "ftp": "bad-scheme:ftp",
        "data": "bad-scheme:data",
        "bomb": "decompression-bomb",
        "truncated": "broken-image",
    }
    for name, reason in expected.items():
        record = cat[u[name]]
        assert record.status == "rejected" and record.reason.startswith(reason), name
        assert record.permanent is (name != "slow"), name
    assert cat[u["redirect"]].status == "kept"
    assert web.requested("/good3.jpg") == 1  # listed twice, fetched once
    assert web.requested("/flaky.jpg") == 4 and web.requested("/busy.jpg") == 2

    # Cross-class: kept once, under the class named first; the URL is not fetched again.
    assert dog_last[u["good2"]].reason == "duplicate-of:" + cat[u["good2"]].sha256
    assert web.requested("/good2.jpg") == 1
    assert dog_last[web.url + "/dog-copy.jpg"].reason == "duplicate-of:" + cat[u["good5"]].sha256
    assert [dog_last[x].status for x in dog_urls] == ["kept"] * 4

    # The folder holds exactly the kept images, as RGB JPEGs, under their recorded paths.
    records = [r for r in read_manifest(out) if r.status == "kept"]
    files = output_files(out)
    assert sorted(out / r.path for r in records) == files
    for r in records:
        assert r.path == f"{r.split}/{r.class_name}/{r.sha256[:16]}.jpg"
        with Image.open(out / r.path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
    assert not (out / ".staging").exists()

    # No val image has a twin (equal or near) anywhere in train.
    hashes = {p: int(str(imagehash.phash(Image.open(p))), 16) for p in files}
    for v in (p for p in files if p.parts[-3] == "val"):
        for t in (p for p in files if p.parts[-3] == "train"):
            assert hamming(hashes[v], hashes[t]) > 6

    summary = {c.name: c for c in report.classes}
    assert summary["cat"].kept == 13 and summary["dog"].kept == 4
    assert summary["cat"].rejected["duplicate-of"] == 2
    assert summary["cat"].rejected["timeout"] == 1
    assert summary["cat"].val in (2, 3)  # 13 * 0.2 = 2.6: floor or ceil, never more or less
    assert summary["cat"].train + summary["cat"].val == 13
    assert "cat" in report.format() and "duplicate-of 2" in report.format()


def test_rerun_continues_and_never_refetches_what_was_decided(web: FakeWeb,
                                                              tmp_path: Path) -> None:
    urls = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(12))]
    urls.insert(3, web.add("/broken.jpg", Route(b"<html>no</html>", content_type="text/html")))
    urls.insert(5, web.add("/flaky.jpg", Route(jpeg(picture(99)), failures=[503] * 4)))
    web.baidu["猫"] = urls
    out = tmp_path / "out"
    first = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=6, retries=1))
    assert first.classes[0].kept == 6
    before = web.counts()
    second = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=10, retries=1))
    assert second.classes[0].kept == 10 and second.classes[0].kept_new == 4
    after = web.counts()
    # Kept and permanently rejected URLs were not asked for again; the 503 one was (transient).
    for path, n in before.items():
        if path.startswith("/p") or path == "/broken.jpg":
            assert after[path] == n, path
    assert after["/flaky.jpg"] > before["/flaky.jpg"]
    kept_paths = {r.path for r in read_manifest(out) if r.status == "kept"}
    assert len(kept_paths) == 10 == len(output_files(out))

    # A third identical run has nothing to do: not even a search.
    requests = len(web.requests)
    third = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=10))
    assert third.classes[0].kept == 10 and len(web.requests) == requests


def test_splits_never_move_and_settings_that_would_move_them_are_refused(
        web: FakeWeb, tmp_path: Path) -> None:
    web.baidu["猫"] = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(20))]
    out = tmp_path / "out"
    crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=8))
    first = {r.url: r.split for r in read_manifest(out) if r.status == "kept"}
    crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=20))
    second = {r.url: r.split for r in read_manifest(out) if r.status == "kept"}
    assert {k: second[k] for k in first} == first
    assert list(second.values()).count("val") == 4  # 20 * 0.2, stratified exactly
    with pytest.raises(ConfigError, match="--val-fraction 0.2"):
        crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=20, val_fraction=0.3))
    with pytest.raises(ConfigError, match="--seed 0"):
        crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=20, seed=1))


def test_the_same_crawl_keeps_the_same_images_whatever_the_timing(web: FakeWeb,
                                                                   tmp_path: Path) -> None:
    imgs = pictures(10)
    urls = []
    for i, b in enumerate(imgs):  # later candidates answer faster than earlier ones
        urls.append(web.add(f"/p{i}.jpg", Route(b, delay=0.02 * (10 - i))))
    urls.insert(2, web.add("/p1-copy.jpg", imgs[1]))
    web.baidu["猫"] = urls

    def kept(out: Path, concurrency: int) -> dict[str, str]:
        crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=5,
                      concurrency=concurrency))
        return {r.url: r.split for r in read_manifest(out) if r.status == "kept"}

    serial, parallel = kept(tmp_path / "a", 1), kept(tmp_path / "b", 8)
    assert serial == parallel
    assert set(serial) == {urls[i] for i in (0, 1, 3, 4, 5)}  # the first five usable, in order
    assert web.requested("/p9.jpg") == 0  # never needed, never downloaded


def test_total_cap_stops_the_crawl_cleanly(web: FakeWeb, tmp_path: Path) -> None:
    web.baidu["猫"] = [web.add(f"/p{i}.jpg", Route(b, chunked=True))
                      for i, b in enumerate(pictures(10))]
    out = tmp_path / "out"
    size = len(pictures(1)[0])
    report = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=10,
                           max_total_bytes=2000 + 3 * size, concurrency=1))
    assert report.stopped and "--max-total-bytes" in report.stopped
    assert report.bytes_downloaded <= 2000 + 3 * size
    assert 1 <= report.classes[0].kept < 10
    assert len(output_files(out)) == report.classes[0].kept


def test_real_baidu_shape_bing_and_url_list_sources(web: FakeWeb, tmp_path: Path) -> None:
    urls = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(40))]
    web.baidu_shape = "real"
    web.baidu["猫"] = urls[:35]  # two pages of 30
    report = crawl(_config(web, tmp_path / "baidu", [ClassSpec("cat", ("猫",))], per_class=33))
    assert report.classes[0].kept == 33
    assert sum(1 for r in web.requests if r.startswith("/search/acjson")) == 2

    web.bing["dog"] = urls[:5]
    web.bing["puppy"] = urls[5:10]
    report = crawl(_config(web, tmp_path / "bing", [ClassSpec("dog", ("dog", "puppy"))],
                           source="bing", per_class=10))
    assert report.classes[0].kept == 10  # both words' results used

    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{'cat' if i % 2 else 'dog'}\t{u}\n" for i, u in
                               enumerate(urls[20:30])))
    report = crawl(CrawlConfig([ClassSpec("cat"), ClassSpec("dog")], tmp_path / "list",
                               source="urls", source_options={"urls_file": listing},
                               per_class=5, allow_private_addresses=True, **FAST))
    assert [c.kept for c in report.classes] == [5, 5]


def test_search_failures_are_reported_not_fatal(web: FakeWeb, tmp_path: Path) -> None:
    web.add("/search/acjson", Route(b"down", status=500))  # overrides the fake search
    report = crawl(_config(web, tmp_path / "out", [ClassSpec("cat", ("猫",))], per_class=3,
                           retries=1))
    assert report.classes[0].kept == 0
    assert any("http-500" in note for note in report.classes[0].notes)
    assert "cat: no images: the search could not be fetched (http-500, 1 results page)" in \
        report.format()
    records = [r for r in read_manifest(tmp_path / "out") if r.status == "search"]
    assert records[0].reason == "http-500"


def test_a_tampered_manifest_cannot_point_outside_the_output(web: FakeWeb,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text(json.dumps({
        "status": "kept", "class": "cat", "url": "http://x/1.jpg", "sha256": "0" * 64,
        "phash": "0" * 16, "split": "train", "path": "../../escape.jpg",
    }) + "\n")
    with pytest.raises(Exception, match="points outside"):
        crawl(_config(web, out, [ClassSpec("cat")], per_class=1))


def test_images_deleted_by_hand_stay_out_and_the_class_is_topped_up(web: FakeWeb,
                                                                    tmp_path: Path) -> None:
    imgs = pictures(8)
    web.baidu["猫"] = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(imgs)]
    # Next in line after the first four: a re-encoded copy of the picture that will be pruned.
    web.baidu["猫"].insert(4, web.add("/p0-copy.jpg", jpeg(Image.open(io.BytesIO(imgs[0])), 70)))
    out = tmp_path / "out"
    crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=4))
    wrong = last_by_url(out, "cat")[web.url + "/p0.jpg"]
    (out / wrong.path).unlink()  # a person prunes a wrong picture
    report = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=4))
    assert report.classes[0].kept == 4 and len(output_files(out)) == 4
    assert web.requested("/p0.jpg") == 1  # not fetched back
    cat = last_by_url(out, "cat")
    assert cat[web.url + "/p0.jpg"].reason == "removed-by-user"
    assert cat[web.url + "/p0-copy.jpg"].reason == "duplicate-of:" + wrong.sha256
    assert cat[web.url + "/p4.jpg"].status == "kept"


def test_a_kill_between_record_and_move_is_finished_by_the_next_run(web: FakeWeb,
                                                                    tmp_path: Path) -> None:
    web.baidu["猫"] = [web.add(f"/p{i}.jpg", b) for i, b in enumerate(pictures(3))]
    out = tmp_path / "out"
    crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=3))
    record = last_by_url(out, "cat")[web.url + "/p1.jpg"]
    (out / ".staging").mkdir()
    (out / record.path).rename(out / record.staged)  # as if killed before os.replace
    (out / ".staging" / ".partial.jpg.123.tmp").write_bytes(b"half")  # killed mid-write
    requests = len(web.requests)
    report = crawl(_config(web, out, [ClassSpec("cat", ("猫",))], per_class=3))
    assert report.classes[0].kept == 3 and (out / record.path).is_file()
    assert len(web.requests) == requests and not (out / ".staging").exists()


def test_one_output_folder_takes_one_crawl_at_a_time(web: FakeWeb, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".crawl.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another crawl is writing"):
            crawl(_config(web, out, [ClassSpec("cat")], per_class=1))


def test_a_failed_staging_write_leaves_no_temporary_file(web: FakeWeb, tmp_path: Path) -> None:
    # A real failure, nothing mocked: a folder stands where the staged file goes, so the write
    # fails at the rename, after the temporary file beside it has been written in full.
    out = tmp_path / "out"
    out.mkdir()
    folder = OutputFolder(out)
    url, image = web.url + "/cat.jpg", clean_image(jpeg(picture(0)), 32, "image/jpeg")
    target = out / folder.stage("cat", url, image)
    target.unlink()
    target.mkdir()
    with pytest.raises(OSError):
        folder.stage("cat", url, image)
    assert list((out / STAGING).iterdir()) == [target]
