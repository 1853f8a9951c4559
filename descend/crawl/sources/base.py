"""The one interface every crawl source implements: a search word and a page number in, URLs out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from descend.errors import ConfigError

# Fetches a search page (url, query parameters) and returns its body; the crawler supplies it so
# that search pages get the same retries, rate limit and size cap as images.
PageGetter = Callable[[str, Mapping[str, str]], Awaitable[bytes]]


class Source(ABC):
    """Turns (class, search word, page number) into candidate image URLs.

    A source only builds requests and parses answers; fetching, retrying and deciding when to
    stop paging belong to the crawler, so a new source is one small file.
    """

    default_base_url: str = ""

    def __init__(self, base_url: str | None = None, urls_file: Path | None = None) -> None:
        self.base_url = check_base_url(base_url or self.default_base_url)

    @abstractmethod
    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        """URLs found on page ``page`` (0, 1, ...) of the results for ``word``; [] when none."""


def check_base_url(url: str) -> str:
    """An http(s) scheme://host[:port][/prefix] without a trailing slash, or `ConfigError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--base-url {url!r} must look like http://host[:port]")
    if parts.query or parts.fragment:
        raise ConfigError(f"--base-url {url!r} cannot carry a query or fragment")
    return url.rstrip("/")


def string_urls(values: object) -> list[str]:
    """Keep the non-empty strings of ``values`` (search answers mix in nulls and numbers)."""
    if not isinstance(values, list):
        return []
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]
