"""Where datasets are read from and where caches are written (SPEC §3).

Data root: ``--data-root``, else ``$DESCEND_DATA``, else ``~/.cache/descend/datasets``.
Cache dir: ``--cache-dir``, else ``$DESCEND_CACHE``, else ``~/.cache/descend/cache``.
Nothing but a download is ever written into the data root, so a read-only root works.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("DESCEND_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "descend" / "datasets"


def image_folder(name: str | None) -> Path | None:
    """The folder of an ``imagefolder:PATH`` dataset name (``~`` expanded), else None."""
    if not name or not name.startswith("imagefolder:"):
        return None
    return Path(name.removeprefix("imagefolder:")).expanduser()


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("DESCEND_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "descend" / "cache"
