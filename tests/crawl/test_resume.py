"""A crawl killed with SIGKILL halfway continues when run again, downloading nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from descend.crawl import ClassSpec, CrawlConfig, crawl
from descend.crawl.manifest import MANIFEST_NAME, history_of, read_records
from tests.support.fakeweb import FakeWeb, Route, pictures

CHILD = """
import sys
from pathlib import Path
from descend.crawl import ClassSpec, CrawlConfig, crawl
crawl(CrawlConfig([ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))], Path(sys.argv[2]),
                  per_class=15, base_url=sys.argv[1], concurrency=2, progress=False))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_halfway_then_rerun_finishes_without_refetching(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FakeWeb() as web:
        for word, start in (("猫", 0), ("狗", 100)):
            web.baidu[word] = [
                web.add(f"/{start + i}.jpg", Route(b, delay=0.05))
                for i, b in enumerate(pictures(20, start=start))
            ]
        child = subprocess.Popen([sys.executable, "-c", CHILD, web.url, str(out)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        manifest = out / MANIFEST_NAME
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            if manifest.exists() and manifest.read_text().count('"status":"kept"') >= 5:
                break
            time.sleep(0.01)
        assert child.poll() is None, child.communicate()[1].decode()[-2000:]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

        before = history_of(read_records(manifest)).last
        assert 5 <= sum(r.status == "kept" for r in before.values()) < 30
        recorded = {url for (_, url), r in before.items()}
        asked_before = {r.split("?")[0] for r in web.requests}
        web.requests.clear()

        report = crawl(CrawlConfig([ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))], out,
                                   per_class=15, base_url=web.url, progress=False))

        assert [c.kept for c in report.classes] == [15, 15]
        asked_after = [r.split("?")[0] for r in web.requests]
        # Nothing the first run recorded (fetched, kept or rejected) is downloaded again.
        assert not {web.url + p for p in asked_after} & recorded
        # So every kept image was fetched once, except one whose download the kill cut short.
        in_flight = {p for p in asked_before if web.url + p not in recorded
                     and not p.startswith("/search")}
        assert len(in_flight) <= 2 * 2  # at most the crawl's task window (2 x concurrency)
        final = history_of(read_records(manifest)).last
        for (_, url), r in final.items():
            if r.status == "kept":
                path = url.removeprefix(web.url)
                expected = 2 if path in in_flight else 1
                assert (path in asked_before) + asked_after.count(path) == expected, path

    files = sorted(p for s in ("train", "val") for p in (out / s).rglob("*") if p.is_file())
    kept = [r for r in final.values() if r.status == "kept"]
    assert sorted(out / r.path for r in kept) == files  # no partial or stray files
    for f in files:
        with Image.open(f) as im:
            im.load()
    assert not (out / ".staging").exists()
