"""Where candidate image URLs come from. Importing this package registers every source."""

from __future__ import annotations

from typing import Any

from descend.crawl.sources import baidu, bing, urls  # noqa: F401  (registration side effect)
from descend.crawl.sources.base import BadPage, PageGetter, Source, SourceOption
from descend.crawl.sources.registry import SOURCES
from descend.errors import ConfigError


def source_options() -> list[SourceOption]:
    """The options of every source, each once, in the order the sources registered."""
    found = {option.name: option for name in SOURCES for option in SOURCES.get(name).options}
    return list(found.values())


def create_source(name: str, **settings: Any) -> Source:
    """The source registered as ``name``, given those of ``settings`` that it takes (its
    `Source.options`; the others are other sources'). `ConfigError` for a name no source has
    and for a setting no source takes, each listing the valid ones."""
    cls = SOURCES.get(name)
    known = [option.name for option in source_options()]
    for key in settings:
        if key not in known:
            raise ConfigError(f"no crawl source takes the option {key!r}; the options are: "
                              f"{', '.join(known)}")
    taken = {option.name for option in cls.options}
    return cls(**{k: v for k, v in settings.items() if k in taken and v is not None})


__all__ = ["SOURCES", "BadPage", "PageGetter", "Source", "SourceOption", "create_source",
           "source_options"]
