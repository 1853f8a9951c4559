"""Where candidate image URLs come from. Importing this package registers every source."""

from __future__ import annotations

from pathlib import Path

from descend.crawl.sources import baidu, bing, urls  # noqa: F401  (registration side effect)
from descend.crawl.sources.base import BadPage, PageGetter, Source
from descend.crawl.sources.registry import SOURCES


def create_source(name: str, base_url: str | None = None, urls_file: Path | None = None) -> Source:
    """The source registered as ``name``; `ConfigError` listing the valid names if none is."""
    cls = SOURCES.get(name)
    return cls(base_url=base_url, urls_file=urls_file)


__all__ = ["SOURCES", "BadPage", "PageGetter", "Source", "create_source"]
