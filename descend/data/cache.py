"""TensorCache: decoded images stored once under the cache dir, keyed by the source files.

The key hashes every file's relative path, size and modification time together with the target
size, so editing, adding or removing a file rebuilds the cache, and an unchanged dataset loads
in well under a second instead of being decoded again. Entries are written atomically, so two
runs building the same entry at once both end with a whole file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from descend.io import atomic_write

CACHE_VERSION = 1


def files_key(files: Iterable[Path], base: Path, *extra: object) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for x in extra:
        h.update(repr(x).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


class TensorCache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root) / "decoded"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            return None

    def save(self, key: str, value: dict[str, Any]) -> None:
        try:
            atomic_write(self.path(key), lambda f: torch.save(value, f))
        except OSError:
            pass  # a read-only or full cache dir costs speed next time, not this run
