"""Downloading: search pages, and candidates fetched once per URL, cleaned, staged and recorded.

A candidate's download ends recorded either way, before any decision on it: ``fetched`` (its
cleaned image staged in ``OUT/.staging``) or ``rejected``. A killed crawl therefore never
downloads a recorded URL again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from descend.crawl.decode import CleanImage, ImageRejected, clean_image
from descend.crawl.fetch import Fetched, Fetcher, FetchError
from descend.crawl.folder import OutputFolder
from descend.crawl.ledger import Ledger
from descend.crawl.manifest import Manifest
from descend.crawl.records import FetchedRecord
from descend.crawl.report import ClassSummary


class Downloads:
    """Everything a crawl downloads, through one `Fetcher` and its shared limits."""

    def __init__(self, fetcher: Fetcher, *, folder: OutputFolder, manifest: Manifest,
                 ledger: Ledger, min_size: int) -> None:
        self.fetcher = fetcher
        self.folder = folder
        self.manifest = manifest
        self.ledger = ledger
        self.min_size = min_size
        self.running: dict[str, asyncio.Future[tuple[Fetched | None, Exception | None]]] = {}

    async def page(self, url: str, params: Mapping[str, str]) -> bytes:
        """A search page's body: a `PageGetter` for the sources."""
        return (await self.fetcher.get(url, params)).body

    async def candidate(self, summary: ClassSummary, url: str) -> FetchedRecord | None:
        """The record of ``url``'s image, downloaded and staged for ``summary``'s class, or None
        if it was rejected (and recorded so)."""
        try:
            fetched = await self.fetch_once(url)
        except FetchError as e:
            self.ledger.rejected(summary, url, e.reason, permanent=e.permanent, fetched=False,
                                 limit=e.limit)
            return None
        summary.fetched += 1
        try:
            image, staged = await asyncio.to_thread(self._clean_and_stage, summary.name, url,
                                                    fetched)
        except ImageRejected as e:
            self.ledger.rejected(summary, url, e.reason, permanent=True, fetched=True,
                                 limit=e.limit, nbytes=len(fetched.body))
            return None
        record = FetchedRecord(
            class_name=summary.name, url=url, sha256=image.sha256, phash=image.phash,
            width=image.width, height=image.height, nbytes=len(fetched.body), staged=staged,
            final_url=fetched.url if fetched.url != url else None,
        )
        self.manifest.append(record)
        return record

    async def fetch_once(self, url: str) -> Fetched:
        """``fetcher.get(url)``, shared by every class that asks while it runs: two classes'
        searches can list one URL before either has decided on it, and then it is still
        downloaded once (the class named first keeps it, the other finds the duplicate)."""
        shared = self.running.get(url)
        if shared is None:
            shared = self.running[url] = asyncio.get_running_loop().create_future()
            try:
                # A result, never an exception, so that a future nobody else awaits is quiet;
                # any Exception (a FetchError, or a bug) reaches every class that asked.
                shared.set_result((await self.fetcher.get(url), None))
            except Exception as e:  # noqa: BLE001  re-raised below, by each asker
                shared.set_result((None, e))
            finally:
                shared.cancel()  # no-op once it has a result; else the crawl is shutting down
                del self.running[url]
        fetched, error = await asyncio.shield(shared)
        if error is not None:
            raise error
        assert fetched is not None
        return fetched

    def _clean_and_stage(self, class_name: str, url: str,
                         fetched: Fetched) -> tuple[CleanImage, str]:
        """(In a worker thread.) Decode and re-encode, then write to staging atomically."""
        image = clean_image(fetched.body, self.min_size, fetched.content_type)
        return image, self.folder.stage(class_name, url, image)
