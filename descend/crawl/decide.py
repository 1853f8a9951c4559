"""Keep or drop, strictly in order: class by class as given, and within a class in the order the
source listed the URLs, whatever order the downloads finished in.

The kept set is therefore the first ``per_class`` usable, non-duplicate candidates of each
class, and an image found under two classes is kept under the one named first. A kept image
moves from staging into ``OUT/{train,val}/<class>/`` with `os.replace`, after its record is
durable: a partial file never appears there, and a kill between record and move leaves a staged
file that the next run's replay moves.
"""

from __future__ import annotations

import os
from pathlib import Path

from descend.crawl.config import CrawlConfig
from descend.crawl.dedup import DuplicateIndex
from descend.crawl.folder import OutputFolder, kept_path
from descend.crawl.ledger import Ledger
from descend.crawl.manifest import Manifest
from descend.crawl.records import FetchedRecord
from descend.crawl.schedule import ClassRun, Schedule
from descend.crawl.split import split_for


class Decisions:
    """Decides every outcome whose turn has come, and moves the kept images into place."""

    def __init__(self, schedule: Schedule, *, config: CrawlConfig, index: DuplicateIndex,
                 folder: OutputFolder, ledger: Ledger, manifest: Manifest) -> None:
        self.schedule = schedule
        self.per_class = config.per_class
        self.val_fraction = config.val_fraction
        self.index = index
        self.folder = folder
        self.ledger = ledger
        self.manifest = manifest

    def decide(self) -> None:
        """Decide in order until an outcome is missing; a finished class passes the turn on."""
        schedule = self.schedule
        moves: list[tuple[Path, Path]] = []
        while not schedule.done:
            c = schedule.turn
            while c.kept < self.per_class and c.next_decide in c.outcomes:
                staged = c.outcomes.pop(c.next_decide)
                c.next_decide += 1
                if staged is not None:
                    moves += self._keep_or_drop(c, staged)
            if not schedule.pass_turn():
                break
        # Records first (one fsync for the batch), then the files: a kill in between leaves
        # kept records whose files are still staged, and the next run's replay moves them.
        self.manifest.sync()
        for staged_file, final in moves:
            os.replace(staged_file, final)

    def _keep_or_drop(self, c: ClassRun, image: FetchedRecord) -> list[tuple[Path, Path]]:
        """Record the decision on ``image``; the move to make if it is kept."""
        c.live -= 1
        staged = self.folder.inside(image.staged)
        twin = self.index.find(image.sha256, image.phash)
        if twin is not None:
            staged.unlink(missing_ok=True)
            self.ledger.rejected(c.summary, image.url, f"duplicate-of:{twin}", permanent=True,
                                 fetched=True)
            return []
        split = split_for(c.kept, self.val_fraction, c.offset)
        record = image.kept(split=split, path=kept_path(split, c.name, image.sha256))
        final = self.folder.place_for(record.path)
        self.ledger.kept(c.summary, record)
        self.index.add(image.sha256, image.phash)
        return [(staged, final)]
