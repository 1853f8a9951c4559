"""Writing down a decision, once, everywhere it shows: the manifest record, the class's counts,
what later candidates learn from it (`Known`), and the progress bar."""

from __future__ import annotations

from tqdm import tqdm

from descend.crawl.manifest import Manifest
from descend.crawl.records import KeptRecord, RejectedRecord
from descend.crawl.replay import Known
from descend.crawl.report import ClassSummary


class Ledger:
    """Records kept images and rejections; the bar counts kept images, rejections beside it."""

    def __init__(self, manifest: Manifest, known: Known, bar: tqdm) -> None:
        self.manifest = manifest
        self.known = known
        self.bar = bar
        self.rejections = 0  # this run, all classes

    def kept(self, summary: ClassSummary, record: KeptRecord) -> None:
        self.manifest.append(record)
        self.known.kept[record.url] = record.sha256
        summary.count_kept(record.split)
        summary.kept_new += 1
        self.bar.update(1)

    def rejected(self, summary: ClassSummary, url: str, reason: str, *, permanent: bool,
                 fetched: bool, limit: int | None = None, nbytes: int | None = None) -> None:
        """A rejection of ``url`` for ``summary``'s class; a ``permanent`` one also answers
        every later candidate with that URL, in any class, without a download."""
        record = RejectedRecord(class_name=summary.name, url=url, reason=reason,
                                permanent=permanent, fetched=fetched, limit=limit, nbytes=nbytes)
        self.manifest.append(record)
        summary.rejected[record.kind] += 1
        if permanent:
            self.known.final.setdefault(url, reason)
        self.rejections += 1
        self.bar.set_postfix(rejected=self.rejections, refresh=False)
