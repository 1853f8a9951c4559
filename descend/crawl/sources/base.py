"""The one interface every crawl source implements: a search word and a page number in, URLs out."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from descend.errors import ConfigError

if TYPE_CHECKING:  # config imports check_base_url from here
    from descend.crawl.config import ClassSpec

# Fetches a search page (url, query parameters) and returns its body; the crawler supplies it so
# that search pages get the same retries, rate limit and size cap as images.
PageGetter = Callable[[str, Mapping[str, str]], Awaitable[bytes]]


class BadPage(Exception):
    """A search answer that cannot be read safely; the crawler notes ``reason`` for that page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Source(ABC):
    """Turns (class, search word, page number) into candidate image URLs.

    A source only builds requests and parses answers; fetching, retrying and deciding when to
    stop paging belong to the crawler, so a new source is one small file.
    """

    default_base_url: str = ""

    def __init__(self, base_url: str | None = None, urls_file: Path | None = None) -> None:
        self.base_url = check_base_url(base_url or self.default_base_url)

    def search_words(self, spec: ClassSpec) -> tuple[str, ...]:
        """The words whose results pages the crawler asks for, for class ``spec``: its own."""
        return spec.words

    @abstractmethod
    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        """URLs found on page ``page`` (0, 1, ...) of the results for ``word``; [] when none."""


def check_base_url(url: str) -> str:
    """An http(s) scheme://host[:port][/prefix] without a trailing slash, or `ConfigError`."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1" : an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--base-url {url!r} must look like http://host[:port]")
    if parts.query or parts.fragment:
        raise ConfigError(f"--base-url {url!r} cannot carry a query or fragment")
    return url.rstrip("/")


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
