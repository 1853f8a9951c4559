"""The crawl: search pages -> candidate URLs -> concurrent downloads -> ordered decisions.

Downloads run concurrently and finish in any order, but whether an image is kept is decided
strictly in order: class by class as given, and within a class in the order the source listed
the URLs. The kept set is therefore the first ``per_class`` usable, non-duplicate candidates of
each class, whatever the network timing, and an image found under two classes is kept under the
one named first. Candidates are issued only while ``kept + undecided <= per_class``, so nothing
is downloaded that could not be needed; spare download slots prefetch the next classes.

Every download is recorded as soon as it finishes (``fetched`` and staged in ``OUT/.staging``,
or ``rejected``), before any decision, so a killed crawl never downloads a recorded URL again.
Kept images move from staging into ``OUT/{train,val}/<class>/`` with `os.replace`: a partial
file never appears there.

One module per part: `replay` (what earlier runs left, and OUT repaired to match), `schedule`
(which searches and downloads start next), `download` (fetching, cleaning and staging),
`decide` (keep or drop, in order), `ledger` (each decision written down); this one sets them up
and runs the loop.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image
from tqdm import tqdm

from descend.crawl.address import AddressPolicy
from descend.crawl.config import CrawlConfig
from descend.crawl.decide import Decisions
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.download import Downloads
from descend.crawl.fetch import Fetcher
from descend.crawl.folder import OutputFolder
from descend.crawl.ledger import Ledger
from descend.crawl.limits import ByteBudget, HostRateLimiter
from descend.crawl.manifest import MANIFEST_NAME, Manifest, open_plain_file
from descend.crawl.names import MAX_NAME_BYTES, check_names_fit
from descend.crawl.proxy import EnvironmentProxies, crawl_transport
from descend.crawl.records import RunRecord
from descend.crawl.replay import replay
from descend.crawl.report import CrawlReport
from descend.crawl.schedule import ClassRun, Schedule
from descend.crawl.sources import Source, create_source
from descend.errors import ConfigError

LOCK_NAME = ".crawl.lock"


def crawl(config: CrawlConfig) -> CrawlReport:
    """Run a crawl to the end (or to a cap) and return its report; see `CrawlConfig`."""
    return asyncio.run(crawl_async(config))


async def crawl_async(config: CrawlConfig) -> CrawlReport:
    """`crawl` for callers that already run an event loop."""
    config.validate()
    proxies = EnvironmentProxies.from_environment()  # a proxy it cannot use: before any write
    source = create_source(config.source, base_url=config.base_url, **config.source_options)
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot use --out {out}: {e.strerror or e}") from None
    check_names_fit([c.name for c in config.classes], _name_max(out), str(out))
    with _exclusive(out), warnings.catch_warnings():
        # Entered once, here, before any worker thread decodes: Pillow's bomb warning becomes
        # an error (a rejection) instead of a line on stderr.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        manifest = Manifest(out / MANIFEST_NAME)
        try:
            return await _run(config, source, out, manifest, proxies)
        finally:
            manifest.close()


async def _run(config: CrawlConfig, source: Source, out: Path, manifest: Manifest,
               proxies: EnvironmentProxies) -> CrawlReport:
    folder = OutputFolder(out)
    policy = AddressPolicy.for_crawl([config.base_url],
                                     allow_private=config.allow_private_addresses)
    classes = [ClassRun.start(spec, config, source) for spec in config.classes]
    index = DuplicateIndex(config.phash_distance)
    known = replay(manifest.history(), manifest=manifest, config=config, folder=folder,
                   policy=policy, index=index, summaries={c.name: c.summary for c in classes})
    manifest.append(RunRecord.of(config))

    start = time.perf_counter()
    budget = ByteBudget(config.max_total_bytes)
    headers = {"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.8"}
    limits = httpx.Limits(max_connections=config.concurrency,
                          max_keepalive_connections=config.concurrency)
    remaining = sum(max(0, config.per_class - c.kept) for c in classes)
    transport = crawl_transport(policy, limits, proxies)
    async with httpx.AsyncClient(headers=headers, transport=transport, follow_redirects=False,
                                 timeout=httpx.Timeout(config.timeout)) as client:
        fetcher = Fetcher(
            client, concurrency=config.concurrency, rate=HostRateLimiter(config.rate),
            budget=budget, timeout=config.timeout, retries=config.retries,
            backoff=config.backoff, max_retry_after=config.max_retry_after,
            max_redirects=config.max_redirects, max_bytes=config.max_bytes,
            rng=random.Random(config.seed),
        )
        bar_off = not config.progress or not sys.stderr.isatty()  # no frames in a log file
        with tqdm(total=remaining, unit="img", desc="crawl", disable=bar_off,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            ledger = Ledger(manifest, known, bar)
            downloads = Downloads(fetcher, folder=folder, manifest=manifest, ledger=ledger,
                                  min_size=config.min_size)
            schedule = Schedule(classes, config=config, source=source, downloads=downloads,
                                known=known, ledger=ledger, budget=budget, manifest=manifest)
            decisions = Decisions(schedule, config=config, index=index, folder=folder,
                                  ledger=ledger, manifest=manifest)
            await _loop(schedule, decisions, manifest, budget)
    # A finished run leaves no staging: downloads nobody decided on (fetched for URLs that
    # are no longer candidates) are dropped, and their records then count as not fetched.
    folder.remove_staging()
    stopped = None
    if budget.exhausted:
        stopped = f"--max-total-bytes {config.max_total_bytes} reached"
    return CrawlReport(
        out=out, manifest=out / MANIFEST_NAME, classes=[c.summary for c in classes],
        seconds=time.perf_counter() - start, bytes_downloaded=budget.used, stopped=stopped,
        # The proxy line first: the report prints only the first MAX_NOTES notes.
        notes=[line for line in [proxies.describe()] if line] + list(manifest.problems),
        source=config.source,
    )


async def _loop(schedule: Schedule, decisions: Decisions, manifest: Manifest,
                budget: ByteBudget) -> None:
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            decisions.decide()
            if schedule.done:
                return
            schedule.issue(tasks)
            if not tasks:
                # Only a spent byte budget may leave a class unfinished with nothing to wait
                # on; anything else is a bug, better loud than a quietly short crawl.
                decisions.decide()
                if not schedule.done and not budget.exhausted:
                    stuck = schedule.turn.name
                    raise RuntimeError(f"crawl stalled at class {stuck!r}")
                return
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                tasks.discard(task)
                task.result()  # a bug in a task must stop the crawl, not vanish
            manifest.sync()  # one fsync for everything these tasks recorded
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that the file system holding ``folder`` allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf
        return MAX_NAME_BYTES


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold a lock on OUT: two crawls appending to one manifest would corrupt its story.

    The lock file is opened without following a link and without truncating: a link planted
    there cannot make the crawl empty (or create) another file.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one crawl per folder is on the user
        yield
        return
    fd = open_plain_file(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, "the lock file")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"another crawl is writing to {out}; wait for it or choose another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
