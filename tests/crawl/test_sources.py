from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from descend.crawl import SOURCES, ClassSpec, create_source
from descend.crawl.sources import BadPage, source_options
from descend.crawl.sources.baidu import parse_baidu
from descend.crawl.sources.bing import parse_bing
from descend.errors import ConfigError


def test_registry_names_and_unknown_source() -> None:
    assert {"baidu", "bing", "urls"} <= set(SOURCES.names())
    with pytest.raises(ConfigError, match=", ".join(sorted(SOURCES.names()))):
        create_source("google")


def test_baidu_seed_shape_and_todays_shape() -> None:
    seed = {"data": {"images": [{"thumburl": "http://a/1.jpg"}, {"thumburl": None}, {}]}}
    assert parse_baidu(json.dumps(seed).encode()) == ["http://a/1.jpg"]
    today = {"data": [{"thumbURL": "http://a/t.jpg", "middleURL": "http://a/m.jpg"},
                      {"thumbURL": "http://a/2.jpg"}, {}]}
    assert parse_baidu(json.dumps(today).encode()) == ["http://a/m.jpg", "http://a/2.jpg"]
    # Baidu escapes ' as \' , which strict JSON refuses.
    assert parse_baidu(b'{"data": [{"thumbURL": "http://a/x.jpg", "fromPageTitle": "it\\\'s"}]}'
                       ) == ["http://a/x.jpg"]
    assert parse_baidu(b'{"data": [{}]}') == []  # found nothing, in today's shape
    assert parse_baidu(b'{"data": {"images": []}}') == []  # and in the seed's
    for unknown in (b"<html>anti-crawler page</html>", b'{"data": null}', b'{"result": []}'):
        with pytest.raises(BadPage, match="unknown-shape"):  # not "found nothing"
            parse_baidu(unknown)


def test_baidu_builds_the_seed_request() -> None:
    asked = []

    async def get(url: str, params: dict) -> bytes:
        asked.append((url, dict(params)))
        return b'{"data": {"images": []}}'

    source = create_source("baidu", base_url="http://127.0.0.1:9/")
    assert asyncio.run(source.page("cat", "猫", 2, get)) == []
    url, params = asked[0]
    assert url == "http://127.0.0.1:9/search/acjson"
    assert params["tn"] == "resultjson_com" and params["word"] == "猫"
    assert params["pn"] == "60" and params["rn"] == "30" and params["ie"] == "utf-8"


def test_bing_reads_murl_from_iusc_links() -> None:
    page = (
        b'<a class="iusc" m="{&quot;murl&quot;:&quot;https://x/1.jpg&quot;,&quot;turl&quot;:'
        b'&quot;https://t/1&quot;}" href="#"></a>'
        b'<a class="other" m="{&quot;murl&quot;:&quot;https://x/no.jpg&quot;}"></a>'
        b'<a class="iusc" m="not json"></a>'
        b"<a class='iusc big' m='{\"murl\": \"https://x/2.jpg?a=1&amp;b=2\"}'></a>"
    )
    assert parse_bing(page) == ["https://x/1.jpg", "https://x/2.jpg?a=1&b=2"]


def test_urls_file_lines_comments_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "urls.txt"
    good.write_text("# pets\ncat\thttp://a/1.jpg\n\ndog  http://a/2.jpg\ncat http://a/3.jpg\n")
    source = create_source("urls", urls_file=good)
    assert source.classes() == ["cat", "dog"]

    async def no_network(url: str, params: dict) -> bytes:
        raise AssertionError("the urls source must not fetch")

    assert asyncio.run(source.page("cat", "cat", 0, no_network)) == ["http://a/1.jpg",
                                                                     "http://a/3.jpg"]
    assert asyncio.run(source.page("cat", "cat", 1, no_network)) == []
    bad = tmp_path / "bad.txt"
    bad.write_text("cat http://a/1.jpg\nhttp://a/2.jpg\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected 'class url'"):
        create_source("urls", urls_file=bad)
    with pytest.raises(ConfigError, match="needs --urls-file"):
        create_source("urls")


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8000", "http://", "http://h/?q=1",
                                 "http://[::1"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="--base-url"):
        create_source("baidu", base_url=url)


def test_json_the_parser_cannot_take_fails_the_page() -> None:
    with pytest.raises(BadPage, match="json-too-deep"):
        parse_baidu(b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(BadPage, match="json-number-too-long"):
        parse_baidu(b'{"data": [{"thumbURL": ' + b"9" * 5000 + b"}]}")
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadPage, match="json-too-deep"):
        parse_bing(f"<a class='iusc' m='{deep}'></a>".encode())


def test_bing_pages_are_read_in_linear_time() -> None:
    # Python's html.parser (3.11.7) took 35 s on 40 kB of the first, and far longer beyond.
    for hostile in (b"<a " * 100_000, b"<a x='" * 50_000, b'<a "' * 75_000, b"<" * 300_000):
        start = time.perf_counter()
        assert parse_bing(hostile) == []
        assert time.perf_counter() - start < 3.0


def test_bing_attribute_forms() -> None:
    page = (b'<A CLASS=iusc M="{&quot;murl&quot;:&quot;https://x/3.jpg&quot;}" disabled>'
            b'<abbr class="iusc" m="{&quot;murl&quot;:&quot;https://x/no.jpg&quot;}">'
            b"<a class='iusc' m='{\"murl\": \"https://x/4.jpg\", \"t\": \"a>b\"}'>"
            b'<a class="iusc" m="{&quot;murl&quot;:&quot;https://x/cut.jpg')  # never closed
    assert parse_bing(page) == ["https://x/3.jpg", "https://x/4.jpg"]


def test_each_source_says_which_words_it_searches_for_a_class(tmp_path: Path) -> None:
    spec = ClassSpec("cat", ("猫", "小猫"))
    assert create_source("baidu").search_words(spec) == ("猫", "小猫")
    assert create_source("bing").search_words(spec) == ("猫", "小猫")
    listing = tmp_path / "urls.txt"
    listing.write_text("cat http://a/1.jpg\n")
    # The file's class column picks the URLs: one pass over them, whatever the words.
    assert create_source("urls", urls_file=listing).search_words(spec) == ("cat",)


def test_each_source_is_given_only_the_options_it_takes(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("cat http://a/1.jpg\n")
    assert {"base_url", "urls_file"} <= {o.name for o in source_options()}
    # The crawl passes every setting; a source keeps its own and is not given the others.
    settings = {"base_url": "http://127.0.0.1:9", "urls_file": listing}
    assert create_source("baidu", **settings).base_url == "http://127.0.0.1:9"
    assert not hasattr(create_source("bing", **settings), "by_class")
    assert create_source("urls", **settings).classes() == ["cat"]
    assert not hasattr(create_source("urls", **settings), "base_url")
    with pytest.raises(ConfigError, match="no crawl source takes the option 'url_file'"):
        create_source("urls", url_file=listing)
