"""Bing image search: the results page's ``a.iusc`` links carry the image URL in JSON."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator

from descend.crawl.sources.base import PageGetter, WebSearchSource, load_json
from descend.crawl.sources.registry import SOURCES

PAGE_SIZE = 35  # what Bing shows per request; ``first`` is the 1-based index of the first


@SOURCES.register("bing")
class BingSource(WebSearchSource):
    """``GET {base}/images/search?q=W&first=N``, reading ``murl`` from each ``a.iusc``'s ``m``."""

    default_base_url = "https://www.bing.com"

    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        params = {"q": word, "first": str(1 + PAGE_SIZE * page), "count": str(PAGE_SIZE),
                  "form": "HDRSC2"}
        body = await get(f"{self.base_url}/images/search", params)
        # In a thread: linear, but seconds for a hostile 10 MB page; downloads go on meanwhile.
        return await asyncio.to_thread(parse_bing, body)


def parse_bing(body: bytes) -> list[str]:
    """Image URLs in one Bing results page, in page order: ``murl`` of each
    ``<a class="iusc" m="{...}">``. `BadPage` if a link's JSON cannot be parsed safely (see
    `load_json`)."""
    urls = []
    for attr in anchor_attributes(body.decode("utf-8", errors="replace")):
        if "iusc" not in attr.get("class", "").split():
            continue
        try:
            meta = load_json(attr.get("m", ""))  # BadPage fails the page: it is hostile
        except json.JSONDecodeError:
            continue
        url = meta.get("murl") if isinstance(meta, dict) else None
        if isinstance(url, str) and url.strip():
            urls.append(url.strip())
    return urls


_A_OPEN = re.compile(r"<a[\s/>]", re.IGNORECASE)
_NAME = re.compile(r"[\s/]*([^\s\"'<>/=]*)\s*")  # always matches, perhaps an empty name
_SPACE = re.compile(r"\s*")
_BARE_VALUE = re.compile(r"[^\s>]*")


def _at(pattern: re.Pattern[str], text: str, pos: int) -> re.Match[str]:
    """``pattern.match`` for the patterns above, which match anywhere (perhaps empty)."""
    match = pattern.match(text, pos)
    assert match is not None
    return match


def anchor_attributes(text: str) -> Iterator[dict[str, str]]:
    """The attributes (names lower-cased, values unescaped) of every ``<a>`` tag in ``text``.

    One left-to-right pass that reads every character once. Python's `html.parser` is not used:
    on malformed tags its time grows faster than the square of the page (3.11.7: 2.3 s for
    10 kB of ``<a <a <a``, 35 s for 40 kB), and a search page is hostile input.
    A tag still open at the end of the page is dropped, as `html.parser` drops it.
    """
    pos = 0
    while match := _A_OPEN.search(text, pos):
        pos = match.end() - 1  # on the space, '/' or '>' after "<a"
        attrs: dict[str, str] = {}
        while True:
            match = _at(_NAME, text, pos)
            name, pos = match.group(1).lower(), match.end()
            if pos >= len(text):
                return
            if text[pos] == ">":
                pos += 1
                yield attrs
                break
            if text[pos] != "=":
                if name:
                    attrs.setdefault(name, "")
                else:
                    pos += 1  # a stray quote or '<' inside the tag: skip it
                continue
            pos = _at(_SPACE, text, pos + 1).end()
            if pos < len(text) and text[pos] in "\"'":
                close = text.find(text[pos], pos + 1)
                if close < 0:
                    return
                value, pos = text[pos + 1:close], close + 1
            else:
                match = _at(_BARE_VALUE, text, pos)
                value, pos = match.group(), match.end()
            if name:
                attrs.setdefault(name, html.unescape(value))
