"""What to start next: the live state of each class, and its searches and downloads.

Classes are served in the order given. A class's candidates are issued in the order its source
listed them, and only while ``kept + live <= per_class`` (``live``: issued, not yet decided and
not known to be rejected), so nothing is downloaded that could not be needed; download slots
the first unfinished class cannot use prefetch the next classes. A class searches for more
candidates, one results page at a time and its search words in turn, when it has none left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from descend.crawl.config import ClassSpec, CrawlConfig
from descend.crawl.download import Downloads
from descend.crawl.fetch import FetchError
from descend.crawl.ledger import Ledger
from descend.crawl.limits import ByteBudget
from descend.crawl.manifest import Manifest
from descend.crawl.records import FetchedRecord, SearchRecord
from descend.crawl.replay import Known
from descend.crawl.report import ClassSummary
from descend.crawl.sources import BadPage, Source
from descend.crawl.split import class_offset

# Longer "image URLs" are junk or an attack on the manifest, where every candidate is written.
MAX_URL_LENGTH = 4096


@dataclass(kw_only=True)
class Word:
    word: str
    page: int = 0
    exhausted: bool = False


@dataclass(kw_only=True)
class ClassRun:
    """The live state of one class during the crawl."""

    spec: ClassSpec
    summary: ClassSummary
    offset: float  # of its train/val split (`descend.crawl.split`)
    words: list[Word]
    candidates: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    next_word: int = 0
    searching: bool = False
    in_flight: int = 0
    next_issue: int = 0
    next_decide: int = 0
    live: int = 0  # issued, not decided and not known to be rejected
    # Candidate index -> its staged image, or None: nothing to decide (rejected, or decided by
    # an earlier run). Filled in any order, emptied in candidate order.
    outcomes: dict[int, FetchedRecord | None] = field(default_factory=dict)

    @classmethod
    def start(cls, spec: ClassSpec, config: CrawlConfig, source: Source) -> ClassRun:
        return cls(
            spec=spec,
            summary=ClassSummary(spec.name, config.per_class),
            offset=class_offset(config.seed, spec.name, config.val_fraction),
            words=[Word(word=w) for w in source.search_words(spec)],
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kept(self) -> int:
        return self.summary.kept

    @property
    def exhausted(self) -> bool:
        return all(w.exhausted for w in self.words)

    def drop(self, index: int) -> None:
        """Nothing to keep at ``index``, known before its turn: its place frees at once."""
        self.outcomes[index] = None
        self.live -= 1


class Schedule:
    """The classes in order, the first unfinished one (its `turn`), and what to start next."""

    def __init__(self, classes: list[ClassRun], *, config: CrawlConfig, source: Source,
                 downloads: Downloads, known: Known, ledger: Ledger, budget: ByteBudget,
                 manifest: Manifest) -> None:
        self.classes = classes
        self._current = 0
        self.per_class = config.per_class
        self.max_pages = config.max_pages
        self.window = 2 * config.concurrency  # tasks in flight: some download, some decode
        self.source = source
        self.downloads = downloads
        self.known = known
        self.ledger = ledger
        self.budget = budget
        self.manifest = manifest

    @property
    def done(self) -> bool:
        return self._current == len(self.classes)

    @property
    def turn(self) -> ClassRun:
        """The first unfinished class: the one whose outcomes are decided now."""
        return self.classes[self._current]

    def pass_turn(self) -> bool:
        """Give the turn to the next class if the current one is finished; whether it did."""
        if self.done or not self.finished(self.turn):
            return False
        self._current += 1
        return True

    def finished(self, c: ClassRun) -> bool:
        """Whether ``c`` is full, or will never get another candidate to decide."""
        if c.kept >= self.per_class:
            return True
        if c.searching or c.in_flight or c.next_decide < c.next_issue:
            return False
        return (c.exhausted and c.next_issue == len(c.candidates)) or self.budget.exhausted

    def issue(self, tasks: set[asyncio.Task[None]]) -> None:
        """Start downloads (and searches) for the first unfinished classes, in class order."""
        if self.budget.exhausted:
            return
        for c in self.classes[self._current:]:
            while len(tasks) < self.window and c.kept + c.live < self.per_class:
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

    def _start(self, c: ClassRun, index: int, url: str, tasks: set[asyncio.Task[None]]) -> None:
        key = (c.name, url)
        if key in self.known.done:
            c.outcomes[index] = None  # decided in an earlier run: not downloaded, not counted
            return
        c.live += 1
        if url in self.known.kept:  # kept under another class: known without downloading
            self._drop(c, index, url, f"duplicate-of:{self.known.kept[url]}")
        elif url in self.known.final:
            self._drop(c, index, url, self.known.final[url])
        elif key in self.known.staged:
            c.outcomes[index] = self.known.staged.pop(key)
        else:
            c.in_flight += 1
            tasks.add(asyncio.create_task(self._download(c, index, url)))

    def _drop(self, c: ClassRun, index: int, url: str, reason: str) -> None:
        self.ledger.rejected(c.summary, url, reason, permanent=True, fetched=False)
        c.drop(index)

    async def _download(self, c: ClassRun, index: int, url: str) -> None:
        try:
            staged = await self.downloads.candidate(c.summary, url)
            if staged is None:
                c.drop(index)
            else:
                c.outcomes[index] = staged
        finally:
            c.in_flight -= 1

    async def _search(self, c: ClassRun) -> None:
        """Fetch the next results page, taking the search words in turn."""
        try:
            active = [w for w in c.words if not w.exhausted]
            word = active[c.next_word % len(active)]
            c.next_word += 1
            try:
                urls = await self.source.page(c.name, word.word, word.page, self.downloads.page)
            except (FetchError, BadPage) as e:
                word.exhausted = True
                c.summary.searches[e.reason.split(":", 1)[0]] += 1
                c.summary.notes.append(f"search for {word.word!r} page {word.page} failed: "
                                       f"{e.reason}")
                self.manifest.append(SearchRecord(class_name=c.name, word=word.word,
                                                  page=word.page, reason=e.reason))
                return
            c.summary.searches["results" if urls else "empty"] += 1
            usable = [u for u in urls if len(u) <= MAX_URL_LENGTH]
            fresh = list(dict.fromkeys(u for u in usable if u not in c.seen))
            self.manifest.append(SearchRecord(
                class_name=c.name, word=word.word, page=word.page, found=len(urls),
                new=len(fresh), too_long=(len(urls) - len(usable)) or None,
            ))
            word.page += 1
            if not fresh or word.page >= self.max_pages:
                word.exhausted = True  # no new results: the source has run dry for this word
            c.candidates += fresh
            c.seen.update(fresh)
            c.summary.found += len(fresh)
        finally:
            c.searching = False
