"""Baidu image search, as the seed (3.2) calls it: ``/search/acjson``, 30 results a page."""

from __future__ import annotations

import json

from descend.crawl.report import UNKNOWN_SHAPE
from descend.crawl.sources.base import (
    BadPage,
    PageGetter,
    WebSearchSource,
    load_json,
    string_urls,
)
from descend.crawl.sources.registry import SOURCES

PAGE_SIZE = 30  # Baidu's rn maximum; pn counts results, so page p starts at 30 * p


@SOURCES.register("baidu")
class BaiduSource(WebSearchSource):
    """``GET {base}/search/acjson?tn=resultjson_com&word=W&pn=30*page&rn=30...``.

    Two answer shapes are read: the seed's ``{"data": {"images": [{"thumburl": ...}]}}`` and
    the one Baidu serves today, ``{"data": [{"middleURL": ..., "thumbURL": ...}, ..., {}]}``.
    """

    default_base_url = "https://image.baidu.com"

    async def page(self, class_name: str, word: str, page: int, get: PageGetter) -> list[str]:
        params = {
            "tn": "resultjson_com",
            "word": word,
            "queryWord": word,
            "ie": "utf-8",
            "oe": "utf-8",
            "fp": "result",
            "ipn": "rj",
            "pn": str(PAGE_SIZE * page),
            "rn": str(PAGE_SIZE),
            "nojc": "0",
            "newReq": "1",
        }
        body = await get(f"{self.base_url}/search/acjson", params)
        return parse_baidu(body)


def parse_baidu(body: bytes) -> list[str]:
    """Image URLs of one acjson answer ([] for one that found nothing).

    `BadPage` "unknown-shape" for an answer in neither known shape (a page for robots, a changed
    API), so that a crawl that finds nothing can say which it was; `BadPage` for JSON that
    cannot be parsed safely (see `load_json`).
    """
    text = body.decode("utf-8", errors="replace")
    try:
        doc = load_json(text)
    except json.JSONDecodeError:
        # Baidu escapes single quotes as \', which JSON does not allow.
        try:
            doc = load_json(text.replace("\\'", "'"))
        except json.JSONDecodeError:
            raise BadPage(UNKNOWN_SHAPE) from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict):  # the seed's shape
        items = data.get("images")
        keys: tuple[str, ...] = ("thumburl", "thumbURL", "middleURL", "middleurl")
    else:  # today's shape; the middle-size picture is worth more than the thumbnail
        items = data
        keys = ("middleURL", "thumbURL", "thumburl")
    if not isinstance(items, list):
        raise BadPage(UNKNOWN_SHAPE)
    urls = []
    for item in items:
        if isinstance(item, dict):
            found = string_urls([item.get(k) for k in keys])
            if found:
                urls.append(found[0])
    return urls
