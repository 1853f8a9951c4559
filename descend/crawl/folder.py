"""The output folder: kept images in ``OUT/{train,val}/<class>/``, downloads waiting for their
decision in ``OUT/.staging``, and the one check that every path read from the manifest goes
through before a file is moved or deleted."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection
from pathlib import Path

from descend.crawl.decode import CleanImage
from descend.errors import DataError
from descend.io import atomic_write

STAGING = ".staging"


class OutputFolder:
    """OUT, with its staging folder made (a plain folder, never a link) on construction."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out.resolve()
        self.staging = out / STAGING
        _plain_folder(self.staging)

    def inside(self, relative: str) -> Path:
        """OUT/relative, refusing any path that resolves outside OUT (a tampered manifest)."""
        path = (self.out / relative).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise DataError(f"manifest path {relative!r} points outside {self.out}")
        return path

    def stage(self, class_name: str, url: str, image: CleanImage) -> str:
        """(In a worker thread.) Write ``image`` to staging atomically; its path relative to OUT.

        The name holds the class and URL as well as the picture: two candidates with the same
        picture each have their own staged file until their decisions.
        """
        tag = hashlib.sha256(f"{class_name}\0{url}".encode()).hexdigest()[:8]
        relative = f"{STAGING}/{image.sha256[:16]}-{tag}.jpg"
        atomic_write(self.out / relative, lambda f: f.write(image.jpeg))
        return relative

    def place_for(self, relative: str) -> Path:
        """OUT/relative, its folder made: where a kept image is moved to."""
        final = self.inside(relative)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot make the folder {final.parent}: {e.strerror or e}") from None
        return final

    def clear_staging(self, keep: Collection[Path] = ()) -> None:
        """Delete every staged file but ``keep``: partial writes, files no record points to."""
        for leftover in self.staging.iterdir():
            if leftover not in keep:
                leftover.unlink()

    def remove_staging(self) -> None:
        self.clear_staging()
        self.staging.rmdir()


def kept_path(split: str, class_name: str, sha256: str) -> str:
    """Where a kept image goes, relative to OUT: one file per picture and class."""
    return f"{split}/{class_name}/{sha256[:16]}.jpg"


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
