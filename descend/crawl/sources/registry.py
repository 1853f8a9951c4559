"""The crawl sources by name: ``baidu``, ``bing``, ``urls``; a new source registers itself here."""

from __future__ import annotations

from descend.crawl.sources.base import Source
from descend.registry import Registry

SOURCES: Registry[type[Source]] = Registry[type[Source]]("crawl source")
