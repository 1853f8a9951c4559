"""Bing image search: the results page's ``a.iusc`` links carry the image URL in JSON."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from descend.crawl.sources.base import PageGetter, Source
from descend.crawl.sources.registry import SOURCES

PAGE_SIZE = 35  # what Bing shows per request; ``first`` is the 1-based index of the first


@SOURCES.register("bing")
class BingSource(Source):
    """``GET {base}/images/search?q=W&first=N``, reading ``murl`` from each ``a.iusc``'s ``m``."""

    default_base_url = "https://www.bing.com"

    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        params = {"q": word, "first": str(1 + PAGE_SIZE * page), "count": str(PAGE_SIZE),
                  "form": "HDRSC2"}
        body = await get(f"{self.base_url}/images/search", params)
        return parse_bing(body)


class _IuscLinks(HTMLParser):
    """Collects ``murl`` of ``<a class="iusc" m="{...}">``; HTMLParser unescapes ``&quot;``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        attr = dict(attrs)
        if "iusc" not in (attr.get("class") or "").split():
            return
        try:
            meta = json.loads(attr.get("m") or "")
        except json.JSONDecodeError:
            return
        url = meta.get("murl") if isinstance(meta, dict) else None
        if isinstance(url, str) and url.strip():
            self.urls.append(url.strip())


def parse_bing(body: bytes) -> list[str]:
    """Image URLs in one Bing results page, in page order."""
    parser = _IuscLinks()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    return parser.urls
