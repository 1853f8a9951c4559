"""TensorCache: decoded images stored once under the cache dir, keyed by the source files.

The key hashes every file's relative path, size and modification time together with the
decoding settings, so editing, adding or removing a file rebuilds the entry, and an unchanged
dataset loads in a fraction of a second instead of being decoded again: the listing and the key
come from one ``os.scandir`` walk (one ``stat`` per file, no `Path` objects), and the pixels are
memory-mapped from the entry rather than read.

Two runs building the same entry at once: the second waits on a lock file for the first and
then reuses its entry; where locking is unavailable both build, and the atomic replace still
leaves one whole entry. A damaged entry is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from descend.io import atomic_write, atomic_write_text

CACHE_VERSION = 2


class FileEntry(NamedTuple):
    path: str  # as found: root joined with rel
    rel: str  # relative to the scanned folder, with "/" separators
    size: int
    mtime_ns: int


def scan_files(folder: str | os.PathLike[str]) -> list[FileEntry]:
    """Every file under ``folder`` (recursively, hidden files and folders left out), by ``rel``."""
    out: list[FileEntry] = []
    stack = [(os.fspath(folder), "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    stack.append((e.path, f"{prefix}{e.name}/"))
                elif e.is_file():
                    st = e.stat()
                    out.append(FileEntry(e.path, prefix + e.name, st.st_size, st.st_mtime_ns))
    out.sort(key=lambda f: f.rel)
    return out


def files_key(files: list[FileEntry], *extra: object) -> str:
    """A hash of the files' identity (relative path, size, mtime) and of ``extra`` settings."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for x in extra:
        h.update(repr(x).encode())
    h.update("\n".join(f"{f.rel}\0{f.size}\0{f.mtime_ns}" for f in files).encode())
    return h.hexdigest()[:32]


def paths_key(paths: list[Path], *extra: object) -> str:
    """`files_key` of a few named files (e.g. a dataset's raw archives)."""
    entries = []
    for p in paths:
        st = p.stat()
        entries.append(FileEntry(str(p), p.name, st.st_size, st.st_mtime_ns))
    return files_key(entries, *extra)


class TensorCache:
    """Entries of tensors (``decoded/KEY.pt``) and small JSON results (``KIND/KEY.json``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.base = Path(root)
        self.root = self.base / "decoded"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            # mmap: the pixels stay in the page cache and are paged in as batches touch them.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            return None

    def save(self, key: str, value: dict[str, Any]) -> None:
        try:
            atomic_write(self.path(key), lambda f: torch.save(value, f))
        except OSError:
            pass  # a read-only or full cache dir costs speed next time, not this run

    @contextlib.contextmanager
    def building(self, key: str) -> Iterator[None]:
        """Hold ``KEY.lock`` while building an entry, so a second builder waits and reuses it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: both build; the atomic replace keeps one whole entry
            yield
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            f = open(self.root / f"{key}.lock", "a+b")  # noqa: SIM115 (held across the yield)
        except OSError:  # a read-only cache dir: build without the lock, the save will not stick
            yield
            return
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def load_json(self, kind: str, key: str) -> Any | None:
        try:
            return json.loads((self.base / kind / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def save_json(self, kind: str, key: str, value: Any) -> None:
        try:
            atomic_write_text(self.base / kind / f"{key}.json", json.dumps(value))
        except OSError:
            pass
