"""Atomic file writes: a reader (or a kill) never sees half a file, and a failed write (disk
full, no permission, a file-size limit) leaves the previous file as it was and no temporary
file behind, and says so in one line."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from descend.errors import WriteError


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename.

    ``os.replace`` is atomic on POSIX and Windows, so ``path`` holds either the old content or
    the new one, whatever happens during the write. An OSError becomes a `WriteError` (a
    `DescendError` and still an OSError) that names the file and says the old one is intact.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
        raise WriteError(f"cannot write {path} ({e.strerror or e}): free some disk space or make "
                         f"the folder writable; {kept}") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # gone after the rename; removed after a failure


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` atomically. Serialised in memory first: torch's zip writer turns a failed
    file write into a RuntimeError that hides its cause, a plain file write does not."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))
