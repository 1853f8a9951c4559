"""The one interface every crawl source implements: a search word and a page number in, URLs out."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from descend.crawl.config import ClassSpec, check_base_url

# Fetches a search page (url, query parameters) and returns its body; the crawler supplies it so
# that search pages get the same retries, rate limit and size cap as images.
PageGetter = Callable[[str, Mapping[str, str]], Awaitable[bytes]]


class BadPage(Exception):
    """A search answer that cannot be read safely, or is not in a shape the source knows
    (``reason`` "unknown-shape"); the crawler notes ``reason`` for that page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SourceOption:
    """A setting that only some sources take: a keyword of their constructor, a key of
    `CrawlConfig.source_options` and a command-line flag (``urls_file``: ``--urls-file``)."""

    name: str
    help: str
    metavar: str
    type: Callable[[str], Any] = str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Source(ABC):
    """Turns (class, search word, page number) into candidate image URLs.

    A source only builds requests and parses answers; fetching, retrying and deciding when to
    stop paging belong to the crawler, so a new source is one small file.
    """

    # The keywords its constructor takes, each optional: `create_source` passes these and no
    # others. Each has a command-line flag; one that is also a setting of the whole crawl
    # (base_url, which the address policy reads too) has that setting's.
    options: ClassVar[tuple[SourceOption, ...]] = ()

    def classes(self) -> list[str]:
        """The classes the source names by itself, in its order; [] for one that searches
        whatever classes the crawl names."""
        return []

    def search_words(self, spec: ClassSpec) -> tuple[str, ...]:
        """The words whose results pages the crawler asks for, for class ``spec``: its own."""
        return spec.words

    @abstractmethod
    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        """URLs found on page ``page`` (0, 1, ...) of the results for ``word``; [] when none."""


BASE_URL = SourceOption("base_url", metavar="URL",
                        help="the search engine's scheme://host[:port], e.g. a mirror")


class WebSearchSource(Source):
    """A search engine at ``default_base_url``, or at ``base_url`` (a mirror, a test server)."""

    default_base_url: ClassVar[str] = ""
    options = (BASE_URL,)

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = check_base_url(base_url or self.default_base_url)


def load_json(text: str) -> object:
    """``text`` parsed, or `json.JSONDecodeError` if it is not JSON; `BadPage` for JSON that
    Python's parser cannot take: nesting deeper than its recursion limit (``[[[[...``) and
    integers longer than its 4300-digit limit, which raise outside the JSONDecodeError family.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise BadPage("json-too-deep") from None
    except ValueError:
        raise BadPage("json-number-too-long") from None


def string_urls(values: object) -> list[str]:
    """Keep the non-empty strings of ``values`` (search answers mix in nulls and numbers)."""
    if not isinstance(values, list):
        return []
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]
