"""Collecting labelled images from the web (SPEC §4, seed 3.2) into an imagefolder layout.

    from descend.crawl import ClassSpec, CrawlConfig, crawl
    report = crawl(CrawlConfig([ClassSpec("cat", ("猫",)), ClassSpec("dog", ("狗",))],
                               out=Path("data/pets"), per_class=150))
    print(report.format())
"""

from __future__ import annotations

from descend.extras import require

require("crawl", "descend crawl")

from descend.crawl.config import ClassSpec, CrawlConfig, parse_class_spec, parse_size
from descend.crawl.crawler import crawl, crawl_async
from descend.crawl.report import ClassSummary, CrawlReport
from descend.crawl.sources import SOURCES, Source, create_source

__all__ = [
    "SOURCES",
    "ClassSpec",
    "ClassSummary",
    "CrawlConfig",
    "CrawlReport",
    "Source",
    "crawl",
    "crawl_async",
    "create_source",
    "parse_class_spec",
    "parse_size",
]
