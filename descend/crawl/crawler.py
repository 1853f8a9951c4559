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
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import stat
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from tqdm import tqdm

from descend.crawl.address import AddressPolicy, GuardedTransport, origin
from descend.crawl.config import ClassSpec, CrawlConfig
from descend.crawl.decode import ImageRejected, clean_image
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.fetch import Fetched, Fetcher, FetchError
from descend.crawl.limits import ByteBudget, HostRateLimiter
from descend.crawl.manifest import (
    FORMAT,
    MANIFEST_NAME,
    History,
    Manifest,
    Record,
    open_plain_file,
)
from descend.crawl.names import MAX_NAME_BYTES, check_names_fit
from descend.crawl.report import ClassSummary, CrawlReport
from descend.crawl.sources import BadPage, Source, create_source
from descend.crawl.split import class_offset, split_for
from descend.errors import ConfigError, DataError
from descend.io import atomic_write

STAGING = ".staging"
LOCK_NAME = ".crawl.lock"
# Longer "image URLs" are junk or an attack on the manifest, where every candidate is written.
MAX_URL_LENGTH = 4096


@dataclass(frozen=True)
class Staged:
    """A downloaded, cleaned image waiting in staging for its keep-or-duplicate decision."""

    sha256: str
    phash: int
    width: int
    height: int
    nbytes: int
    staged: str  # path relative to OUT


@dataclass(frozen=True)
class Rejected:
    reason: str


SKIP = object()  # decided in an earlier run: neither downloaded nor counted again

Outcome = Any  # Staged | Rejected | SKIP (a sentinel object, hence Any)


@dataclass
class _Word:
    word: str
    page: int = 0
    exhausted: bool = False


@dataclass
class _ClassRun:
    """The live state of one class during the crawl."""

    spec: ClassSpec
    summary: ClassSummary
    offset: float
    words: list[_Word]
    candidates: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    next_word: int = 0
    searching: bool = False
    in_flight: int = 0
    next_issue: int = 0
    next_decide: int = 0
    live: int = 0  # issued, not decided and not known to be rejected
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kept(self) -> int:
        return self.summary.kept

    @property
    def exhausted(self) -> bool:
        return all(w.exhausted for w in self.words)


def crawl(config: CrawlConfig) -> CrawlReport:
    """Run a crawl to the end (or to a cap) and return its report; see `CrawlConfig`."""
    return asyncio.run(crawl_async(config))


async def crawl_async(config: CrawlConfig) -> CrawlReport:
    """`crawl` for callers that already run an event loop."""
    config.validate()
    source = create_source(config.source, config.base_url, config.urls_file)
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
            run = _Crawl(config, source, out, manifest)
            return await run.run()
        finally:
            manifest.close()


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


class _Crawl:
    def __init__(self, config: CrawlConfig, source: Source, out: Path, manifest: Manifest) -> None:
        self.config = config
        self.source = source
        self.out = out
        self.root = out.resolve()
        self.manifest = manifest
        self.budget = ByteBudget(config.max_total_bytes)
        self.index = DuplicateIndex(config.phash_distance)
        self.url_kept: dict[str, str] = {}  # URL -> sha256 of the image kept from it
        self.url_final: dict[str, str] = {}  # URL -> a permanent rejection reason
        self.done: set[tuple[str, str]] = set()  # (class, URL) decided by an earlier run
        self.resumable: dict[tuple[str, str], Staged] = {}
        self.window = 2 * config.concurrency  # tasks in flight: some download, some decode
        self.classes = [self._class_run(spec) for spec in config.classes]
        self.current = 0
        self.progress: tqdm | None = None
        self.rejected = 0  # this run, all classes: shown beside the progress bar
        self.fetcher: Fetcher | None = None
        self.downloads: dict[str, asyncio.Future[Any]] = {}  # URL -> (Fetched, FetchError)
        self.policy = AddressPolicy.for_crawl(config.allow_private_addresses, [config.base_url])
        _plain_folder(out / STAGING)
        self._replay(manifest.history())

    def _class_run(self, spec: ClassSpec) -> _ClassRun:
        words = [spec.name] if self.config.source == "urls" else list(spec.words)
        return _ClassRun(
            spec=spec,
            summary=ClassSummary(spec.name, self.config.per_class),
            offset=class_offset(self.config.seed, spec.name, self.config.val_fraction),
            words=[_Word(w) for w in words],
        )

    # -- resuming -----------------------------------------------------------------------------

    def _replay(self, history: History) -> None:
        """Rebuild counts, duplicate index and skip sets from the manifest; repair the folder."""
        first = history.first_run
        if first is not None:
            for key, flag in (("val_fraction", "--val-fraction"), ("seed", "--seed")):
                if first.get(key) != getattr(self.config, key):
                    raise ConfigError(
                        f"{self.out} was crawled with {flag} {first.get(key)}; a different "
                        f"value would move images between splits: use {flag} {first.get(key)} "
                        "or a new --out"
                    )
        by_name = {c.name: c for c in self.classes}
        referenced: set[Path] = set()
        for (name, url), record in history.last.items():
            status = record["status"]
            if status == "kept":
                self.index.add(record["sha256"], int(record["phash"], 16))
                self.done.add((name, url))
                if not self._restore_kept(record):
                    # Deleted by hand (a wrong or bad picture): it stays out, and so do its
                    # copies; the class is topped up with other images.
                    self.manifest.append({"status": "rejected", "class": name, "url": url,
                                          "reason": "removed-by-user", "permanent": True,
                                          "fetched": True, "path": record["path"]})
                    self.url_final[url] = "removed-by-user"
                    if name in by_name:
                        by_name[name].summary.rejected["removed-by-user"] += 1
                    continue
                self.url_kept[url] = record["sha256"]
                if name in by_name:
                    summary = by_name[name].summary
                    setattr(summary, record["split"], getattr(summary, record["split"]) + 1)
            elif status == "rejected":
                if record.get("permanent") and self._still_rejects(record):
                    self.done.add((name, url))
                    self.url_final[url] = record["reason"]
            elif status == "fetched":
                staged = self._inside(record["staged"])
                if staged.is_file():
                    referenced.add(staged)
                    self.resumable[(name, url)] = Staged(
                        record["sha256"], int(record["phash"], 16), record["width"],
                        record["height"], record["bytes"], record["staged"],
                    )
        for leftover in (self.out / STAGING).iterdir():
            if leftover not in referenced:  # partial writes and files no record points to
                leftover.unlink()
        self.manifest.append({
            "status": "run", "format": FORMAT, "source": self.config.source,
            "val_fraction": self.config.val_fraction, "seed": self.config.seed,
            "per_class": self.config.per_class,
            "classes": {c.name: list(c.words) for c in self.config.classes},
        })

    def _restore_kept(self, record: Record) -> bool:
        """True if the kept file is in place, finishing a move that a kill interrupted; False
        if it is gone from both places, which only a person (or another program) can do."""
        final = self._inside(record["path"])
        if final.is_file():
            return True
        staged = self._inside(record["staged"]) if record.get("staged") else None
        if staged is not None and staged.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            return True
        return False

    def _still_rejects(self, record: Record) -> bool:
        """A size rejection stands only while the limit that caused it does, an address
        rejection only while the address policy has not been opened up for it."""
        kind, limit = record["reason"].split(":")[0], record.get("limit")
        if kind == "blocked-address":
            try:
                return not self.policy.trusts(*origin(record["url"]))
            except (httpx.InvalidURL, KeyError, UnicodeError):
                return not self.policy.allow_private
        if kind == "too-large" and limit is not None:
            return self.config.max_bytes <= limit
        if kind == "too-small" and limit is not None:
            return self.config.min_size >= limit
        return True

    def _inside(self, relative: str) -> Path:
        """OUT/relative, refusing any path that resolves outside OUT (a tampered manifest)."""
        path = (self.out / relative).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise DataError(f"manifest path {relative!r} points outside {self.out}")
        return path

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> CrawlReport:
        start = time.perf_counter()
        config = self.config
        headers = {"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.8"}
        limits = httpx.Limits(max_connections=config.concurrency,
                              max_keepalive_connections=config.concurrency)
        remaining = sum(max(0, config.per_class - c.kept) for c in self.classes)
        transport = GuardedTransport(self.policy, limits)
        async with httpx.AsyncClient(headers=headers, transport=transport, follow_redirects=False,
                                     timeout=httpx.Timeout(config.timeout)) as client:
            self.fetcher = Fetcher(
                client, concurrency=config.concurrency, rate=HostRateLimiter(config.rate),
                budget=self.budget, timeout=config.timeout, retries=config.retries,
                backoff=config.backoff, max_retry_after=config.max_retry_after,
                max_redirects=config.max_redirects, max_bytes=config.max_bytes,
                rng=random.Random(config.seed),
            )
            bar_off = not config.progress or not sys.stderr.isatty()  # no frames in a log file
            with tqdm(total=remaining, unit="img", desc="crawl", disable=bar_off,
                      file=sys.stderr, dynamic_ncols=True) as self.progress:
                await self._loop()
        # A finished run leaves no staging: downloads nobody decided on (fetched for URLs that
        # are no longer candidates) are dropped, and their records then count as not fetched.
        staging = self.out / STAGING
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
        stopped = None
        if self.budget.exhausted:
            stopped = f"--max-total-bytes {config.max_total_bytes} reached"
        return CrawlReport(
            out=self.out, manifest=self.out / MANIFEST_NAME,
            classes=[c.summary for c in self.classes], seconds=time.perf_counter() - start,
            bytes_downloaded=self.budget.used, stopped=stopped,
            notes=list(self.manifest.problems),
        )

    async def _loop(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._decide()
                if self.current == len(self.classes):
                    return
                self._issue(tasks)
                if not tasks:
                    # Only a spent byte budget may leave a class unfinished with nothing to wait
                    # on; anything else is a bug, better loud than a quietly short crawl.
                    self._decide()
                    if self.current < len(self.classes) and not self.budget.exhausted:
                        stuck = self.classes[self.current].name
                        raise RuntimeError(f"crawl stalled at class {stuck!r}")
                    return
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    tasks.discard(task)
                    task.result()  # a bug in a task must stop the crawl, not vanish
                self.manifest.sync()  # one fsync for everything these tasks recorded
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, c: _ClassRun) -> bool:
        if c.kept >= self.config.per_class:
            return True
        if c.searching or c.in_flight or c.next_decide < c.next_issue:
            return False
        return (c.exhausted and c.next_issue == len(c.candidates)) or self.budget.exhausted

    def _issue(self, tasks: set[asyncio.Task[None]]) -> None:
        """Start downloads (and searches) for the first unfinished classes, in class order."""
        if self.budget.exhausted:
            return
        for c in self.classes[self.current:]:
            while len(tasks) < self.window and c.kept + c.live < self.config.per_class:
                if c.next_issue < len(c.candidates):
                    index = c.next_issue
                    c.next_issue += 1
                    self._start(c, index, c.candidates[index], tasks)
                elif not c.exhausted and not c.searching:
                    c.searching = True
                    tasks.add(asyncio.create_task(self._search(c)))
                    break
                else:
                    break

    def _start(self, c: _ClassRun, index: int, url: str, tasks: set[asyncio.Task[None]]) -> None:
        key = (c.name, url)
        if key in self.done:
            c.outcomes[index] = SKIP
            return
        c.live += 1
        if url in self.url_kept:  # kept under another class: known without downloading
            self._reject(c, index, url, f"duplicate-of:{self.url_kept[url]}", True, False)
        elif url in self.url_final:
            self._reject(c, index, url, self.url_final[url], True, False)
        elif key in self.resumable:
            c.outcomes[index] = self.resumable.pop(key)
        else:
            c.in_flight += 1
            tasks.add(asyncio.create_task(self._download(c, index, url)))

    # -- tasks --------------------------------------------------------------------------------

    async def _search(self, c: _ClassRun) -> None:
        """Fetch the next results page, taking the search words in turn."""
        try:
            active = [w for w in c.words if not w.exhausted]
            word = active[c.next_word % len(active)]
            c.next_word += 1
            try:
                urls = await self.source.page(c.name, word.word, word.page, self._page_body)
            except (FetchError, BadPage) as e:
                word.exhausted = True
                c.summary.notes.append(f"search for {word.word!r} page {word.page} failed: "
                                       f"{e.reason}")
                self.manifest.append({"status": "search", "class": c.name, "word": word.word,
                                      "page": word.page, "reason": e.reason})
                return
            usable = [u for u in urls if len(u) <= MAX_URL_LENGTH]
            fresh = list(dict.fromkeys(u for u in usable if u not in c.seen))
            record: Record = {"status": "search", "class": c.name, "word": word.word,
                              "page": word.page, "found": len(urls), "new": len(fresh)}
            if len(usable) < len(urls):
                record["too_long"] = len(urls) - len(usable)
            self.manifest.append(record)
            word.page += 1
            if not fresh or word.page >= self.config.max_pages:
                word.exhausted = True  # no new results: the source has run dry for this word
            c.candidates += fresh
            c.seen.update(fresh)
            c.summary.found += len(fresh)
        finally:
            c.searching = False

    async def _page_body(self, url: str, params: Any) -> bytes:
        assert self.fetcher is not None
        return (await self.fetcher.get(url, params)).body

    async def _fetch_once(self, url: str) -> Fetched:
        """``fetcher.get(url)``, shared by every class that asks while it runs: two classes'
        searches can list one URL before either has decided on it, and then it is still
        downloaded once (the class named first keeps it, the other finds the duplicate)."""
        assert self.fetcher is not None
        shared = self.downloads.get(url)
        if shared is None:
            shared = self.downloads[url] = asyncio.get_running_loop().create_future()
            try:
                # A result, never an exception, so that a future nobody else awaits is quiet;
                # any Exception (a FetchError, or a bug) reaches every class that asked.
                shared.set_result((await self.fetcher.get(url), None))
            except Exception as e:  # noqa: BLE001  re-raised below, by each asker
                shared.set_result((None, e))
            finally:
                shared.cancel()  # no-op once it has a result; else the crawl is shutting down
                del self.downloads[url]
        fetched, error = await asyncio.shield(shared)
        if error is not None:
            raise error
        return fetched

    async def _download(self, c: _ClassRun, index: int, url: str) -> None:
        try:
            assert self.fetcher is not None
            try:
                fetched = await self._fetch_once(url)
            except FetchError as e:
                self._reject(c, index, url, e.reason, e.permanent, False, e.limit)
                return
            c.summary.fetched += 1
            try:
                staged = await asyncio.to_thread(
                    self._clean_and_stage, c.name, url, fetched.body, fetched.content_type
                )
            except ImageRejected as e:
                self._reject(c, index, url, e.reason, True, True, e.limit, len(fetched.body))
                return
            record: Record = {
                "status": "fetched", "class": c.name, "url": url, "sha256": staged.sha256,
                "phash": f"{staged.phash:016x}", "width": staged.width, "height": staged.height,
                "bytes": staged.nbytes, "staged": staged.staged,
            }
            if fetched.url != url:
                record["final_url"] = fetched.url
            self.manifest.append(record)
            c.outcomes[index] = staged
        finally:
            c.in_flight -= 1

    def _clean_and_stage(self, name: str, url: str, body: bytes, content_type: str) -> Staged:
        """(In a worker thread.) Decode and re-encode, then write to staging atomically."""
        image = clean_image(body, self.config.min_size, content_type)
        tag = hashlib.sha256(f"{name}\0{url}".encode()).hexdigest()[:8]
        relative = f"{STAGING}/{image.sha256[:16]}-{tag}.jpg"
        atomic_write(self.out / relative, lambda f: f.write(image.jpeg))
        return Staged(image.sha256, image.phash, image.width, image.height, len(body), relative)

    # -- decisions ----------------------------------------------------------------------------

    def _reject(self, c: _ClassRun, index: int, url: str, reason: str, permanent: bool,
                fetched: bool, limit: int | None = None, nbytes: int | None = None) -> None:
        """Record a rejection known before its turn; its place frees at once for another."""
        self._record_rejection(c, url, reason, permanent, fetched, limit, nbytes)
        c.outcomes[index] = Rejected(reason)
        c.live -= 1

    def _decide(self) -> None:
        """Decide every outcome whose turn has come: classes in order, candidates in order."""
        moves: list[tuple[Path, Path]] = []
        while self.current < len(self.classes):
            c = self.classes[self.current]
            while c.kept < self.config.per_class and c.next_decide in c.outcomes:
                outcome = c.outcomes.pop(c.next_decide)
                c.next_decide += 1
                if isinstance(outcome, Staged):
                    self._keep_or_drop(c, c.candidates[c.next_decide - 1], outcome, moves)
            if not self._finished(c):
                break
            self.current += 1
        # Records first (one fsync for the batch), then the files: a kill in between leaves
        # kept records whose files are still staged, and the next run's replay moves them.
        self.manifest.sync()
        for staged, final in moves:
            os.replace(staged, final)

    def _keep_or_drop(self, c: _ClassRun, url: str, image: Staged,
                      moves: list[tuple[Path, Path]]) -> None:
        c.live -= 1
        staged = self._inside(image.staged)
        twin = self.index.find(image.sha256, image.phash)
        if twin is not None:
            staged.unlink(missing_ok=True)
            self._record_rejection(c, url, f"duplicate-of:{twin}")
            return
        split = split_for(c.kept, self.config.val_fraction, c.offset)
        relative = f"{split}/{c.name}/{image.sha256[:16]}.jpg"
        final = self._inside(relative)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot make the folder {final.parent}: {e.strerror or e}") from None
        self.manifest.append({
            "status": "kept", "class": c.name, "url": url, "sha256": image.sha256,
            "phash": f"{image.phash:016x}", "width": image.width, "height": image.height,
            "bytes": image.nbytes, "split": split, "path": relative, "staged": image.staged,
        })
        moves.append((staged, final))
        self.index.add(image.sha256, image.phash)
        self.url_kept[url] = image.sha256
        setattr(c.summary, split, getattr(c.summary, split) + 1)
        c.summary.kept_new += 1
        if self.progress is not None:
            self.progress.update(1)

    def _record_rejection(self, c: _ClassRun, url: str, reason: str, permanent: bool = True,
                          fetched: bool = True, limit: int | None = None,
                          nbytes: int | None = None) -> None:
        record: Record = {"status": "rejected", "class": c.name, "url": url, "reason": reason,
                          "permanent": permanent, "fetched": fetched}
        if limit is not None:
            record["limit"] = limit
        if nbytes is not None:
            record["bytes"] = nbytes
        self.manifest.append(record)
        c.summary.rejected[reason.split(":")[0]] += 1
        if permanent:
            self.url_final.setdefault(url, reason)
        if self.progress is not None:
            self.rejected += 1
            self.progress.set_postfix(rejected=self.rejected, refresh=False)


def _plain_folder(path: Path) -> None:
    """Make ``path`` a folder, refusing a link: every file in staging is deleted at the end,
    so a planted ``.staging`` link to another folder would empty that folder."""
    try:
        path.mkdir(exist_ok=True)
        mode = os.lstat(path).st_mode
    except OSError as e:
        raise DataError(f"cannot make {path}: {e.strerror or e}") from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"{path} is not a plain folder (a link?); remove it and run again")
