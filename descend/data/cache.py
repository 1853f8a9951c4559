"""TensorCache: decoded images stored once under the cache dir, keyed by the source files.

The key hashes every file's relative path, size and modification time together with the
decoding settings, so editing, adding or removing a file rebuilds the entry, and an unchanged
dataset loads in a fraction of a second instead of being decoded again: the listing and the key
come from one ``os.scandir`` walk (one ``stat`` per file, no `Path` objects), and the pixels are
memory-mapped from the entry rather than read.

The walk follows symbolic links, to files and to folders, wherever they lead: a folder of links
is the usual way to make a split or a subset without copying, and descend reads only what its
user can read anyway. It walks each real folder once: a link back to a folder above (``ln -s .
dog/loop``) or to one already walked is listed as skipped, not followed round. File names are
used as the system gives them, bytes that are not UTF-8 included.

Two runs building the same entry at once: the second waits on a lock file for the first and
then reuses its entry; where locking is unavailable both build, and the atomic replace still
leaves one whole entry. A damaged entry is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from descend.io import atomic_torch_save, atomic_write_text

log = logging.getLogger("descend")

CACHE_VERSION = 2


class FileEntry(NamedTuple):
    path: str  # as found: root joined with rel
    rel: str  # relative to the scanned folder, with "/" separators
    size: int
    mtime_ns: int


def scan_files(folder: str | os.PathLike[str]) -> list[FileEntry]:
    """Every file under ``folder`` (recursively, hidden files and folders left out), by ``rel``."""
    return list_files(folder)[0]


def list_files(folder: str | os.PathLike[str]
               ) -> tuple[list[FileEntry], list[dict[str, str]]]:
    """`scan_files`, and what it passed over, each {"path", "reason", "detail"}: a link to
    nothing (``missing``), a link back to a folder above it or to itself (``symlink-loop``), a
    second link to a folder already walked (``linked-twice``), a FIFO, socket or device
    (``not-a-file``), what cannot be listed or looked at (``unreadable``)."""
    files: list[FileEntry] = []
    skipped: list[dict[str, str]] = []

    def skip(path: str, reason: str, detail: str) -> None:
        skipped.append({"path": path, "reason": reason, "detail": detail})

    top = os.fspath(folder)
    top_id = _identity(os.stat(top))
    walked = {top_id: top}  # each real folder, and the path it was walked by
    # (folder, its rel prefix, the real folders it is in, itself included, up to "/")
    stack = [(top, "", _folders_above(top) | {top_id})]
    while stack:
        directory, prefix, inside = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:  # no permission to list it
            skip(directory, "unreadable", e.strerror or str(e))
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # of what a link leads to
            except OSError as err:
                if not entry.is_symlink():
                    skip(entry.path, "unreadable", err.strerror or str(err))
                elif err.errno == errno.ELOOP:
                    skip(entry.path, "symlink-loop", f"a link to {_target(entry.path)} that leads "
                                                 "back to itself")
                else:
                    skip(entry.path, "missing", f"a link to {_target(entry.path)}, which does not "
                                            "exist")
                continue
            if stat.S_ISREG(st.st_mode):
                files.append(FileEntry(entry.path, prefix + entry.name, st.st_size, st.st_mtime_ns))
            elif stat.S_ISDIR(st.st_mode):
                folders.append((entry.is_symlink(), entry.name, entry.path, _identity(st)))
            else:
                skip(entry.path, "not-a-file", "a FIFO, socket or device, not a regular file")
        for _, name, path, key in sorted(folders):  # real folders first: they win over links
            if key in inside:
                skip(path, "symlink-loop", f"a link to {os.path.realpath(path)}, a folder it "
                                           "is in: walking it would never end")
            elif key in walked:
                skip(path, "linked-twice", f"the same folder as {walked[key]}, whose files "
                                           "are listed once")
            else:
                walked[key] = path
                stack.append((path, f"{prefix}{name}/", inside | {key}))
    files.sort(key=lambda f: f.rel)
    skipped.sort(key=lambda s: s["path"])
    return files, skipped


def _identity(st: os.stat_result) -> tuple[int, int]:
    """A real folder, however it is reached."""
    return st.st_dev, st.st_ino


def _target(link: str) -> str:
    try:
        return os.readlink(link)
    except OSError:  # replaced since it was listed
        return "?"


def _folders_above(path: str) -> frozenset[tuple[int, int]]:
    """The real folders that hold ``path``, up to the root of the file system."""
    found = set()
    here = os.path.realpath(path)
    while (parent := os.path.dirname(here)) != here:
        here = parent
        try:
            found.add(_identity(os.stat(here)))
        except OSError:  # a folder above that cannot be looked at cannot be linked to either
            break
    return frozenset(found)


def files_key(files: list[FileEntry], *extra: object) -> str:
    """A hash of the files' identity (relative path, size, mtime) and of ``extra`` settings."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for x in extra:
        h.update(repr(x).encode())
    # surrogateescape: a name that is not UTF-8 (Linux allows any bytes) hashes as its bytes
    h.update("\n".join(f"{f.rel}\0{f.size}\0{f.mtime_ns}" for f in files)
             .encode("utf-8", "surrogateescape"))
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
            atomic_torch_save(self.path(key), value)
        except OSError as e:  # a read-only or full cache dir costs speed next time, not this run
            _cache_not_written(e)

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
        except OSError as e:
            _cache_not_written(e)


def _cache_not_written(e: OSError) -> None:
    # Reported, not swallowed: the run goes on, and the user learns why the next one is slow.
    log.warning("descend: note: the decode cache was not written (%s); this run goes on, the "
                "next one decodes again: free disk space or set --cache-dir / $DESCEND_CACHE",
                e)
