"""Keep-or-drop decisions on outcomes that arrive out of order, without a network."""

from __future__ import annotations

from pathlib import Path

import httpx
from tqdm import tqdm

from descend.crawl import ClassSpec, CrawlConfig, create_source
from descend.crawl.decide import Decisions
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.download import Downloads
from descend.crawl.fetch import Fetcher
from descend.crawl.folder import OutputFolder
from descend.crawl.ledger import Ledger
from descend.crawl.limits import ByteBudget, HostRateLimiter
from descend.crawl.manifest import Manifest, read_records
from descend.crawl.records import FetchedRecord, KeptRecord
from descend.crawl.replay import Known
from descend.crawl.schedule import ClassRun, Schedule


def test_decisions_wait_for_their_turn_and_keep_the_first_of_two_copies(tmp_path: Path) -> None:
    config = CrawlConfig([ClassSpec("cat"), ClassSpec("dog")], tmp_path, per_class=2,
                         val_fraction=0.0, progress=False)
    source = create_source("baidu")
    classes = [ClassRun.start(spec, config, source) for spec in config.classes]
    folder = OutputFolder(tmp_path)
    manifest = Manifest(tmp_path / "manifest.jsonl")
    budget = ByteBudget(None)
    fetcher = Fetcher(httpx.AsyncClient(), concurrency=1, rate=HostRateLimiter(None),
                      budget=budget, timeout=1.0, retries=0, backoff=0.0, max_retry_after=0.0,
                      max_redirects=0, max_bytes=1 << 20)  # never used: nothing is downloaded
    known = Known()
    with tqdm(disable=True) as bar:
        ledger = Ledger(manifest, known, bar)
        downloads = Downloads(fetcher, folder=folder, manifest=manifest, ledger=ledger,
                              min_size=1)
        schedule = Schedule(classes, config=config, source=source, downloads=downloads,
                            known=known, ledger=ledger, budget=budget, manifest=manifest)
        decisions = Decisions(schedule, config=config, index=DuplicateIndex(), folder=folder,
                              ledger=ledger, manifest=manifest)

        cat, dog = classes
        images = []
        for n, c in enumerate([cat, cat, dog, dog]):
            url = f"http://example.com/{n}.jpg"
            c.candidates.append(url)
            c.next_issue += 1
            c.live += 1
            # Cat's first and dog's first are one picture; so are the seconds.
            sha, phash = str(n % 2 + 1) * 64, (1 << 64) - 1 if n % 2 else 0
            images.append(FetchedRecord(class_name=c.name, url=url, sha256=sha, phash=phash,
                                        width=8, height=8, nbytes=10,
                                        staged=f".staging/{n}.jpg"))
            (tmp_path / f".staging/{n}.jpg").write_bytes(b"jpeg")
        for c in (cat, dog):
            c.words[0].exhausted = True  # the source has nothing more

        cat.outcomes[1] = images[1]
        dog.outcomes[0], dog.outcomes[1] = images[2], images[3]
        decisions.decide()
        assert schedule.turn is cat and cat.kept == 0  # cat's first is still downloading
        cat.outcomes[0] = images[0]
        decisions.decide()
        manifest.close()

    assert schedule.done and (cat.kept, dog.kept) == (2, 0)
    assert dict(dog.summary.rejected) == {"duplicate-of": 2}
    kept = [r for r in read_records(tmp_path / "manifest.jsonl") if isinstance(r, KeptRecord)]
    assert [r.url for r in kept] == [images[0].url, images[1].url]
    assert sorted(p.name for p in (tmp_path / "train/cat").iterdir()) == sorted(
        Path(r.path).name for r in kept)
    assert list(folder.staging.iterdir()) == []  # kept ones moved, duplicates deleted
    assert known.kept == {r.url: r.sha256 for r in kept}
