from __future__ import annotations

from pathlib import Path

import pytest

from descend.crawl import ClassSpec, CrawlConfig, parse_class_spec, parse_size
from descend.errors import ConfigError


def test_class_spec_forms() -> None:
    assert parse_class_spec("cat=猫") == ClassSpec("cat", ("猫",))
    assert parse_class_spec("cat=猫, 小猫 ,") == ClassSpec("cat", ("猫", "小猫"))
    assert parse_class_spec("cat") == ClassSpec("cat", ("cat",))
    with pytest.raises(ConfigError, match="no search word"):
        parse_class_spec("cat=")


def test_sizes() -> None:
    assert parse_size("10MB") == 10 << 20
    assert parse_size("500k") == 500 << 10
    assert parse_size("1.5G") == int(1.5 * (1 << 30))
    assert parse_size("123") == 123
    with pytest.raises(ConfigError, match="not understood"):
        parse_size("ten")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"per_class": 0}, "--per-class"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"concurrency": 0}, "--concurrency"),
        ({"rate": 0.0}, "--rate"),
        ({"classes": [ClassSpec("a/b")]}, "cannot be a folder name"),
        ({"classes": []}, "no class"),
        ({"source_options": {"base_url": "http://x"}}, "base_url is a setting of the whole"),
    ],
)
def test_invalid_values_are_config_errors(change: dict, message: str, tmp_path: Path) -> None:
    settings = {"classes": [ClassSpec("cat")], "out": tmp_path, **change}
    with pytest.raises(ConfigError, match=message):
        CrawlConfig(**settings).validate()


@pytest.mark.parametrize("url", ["ftp://x", "garbage", "http://[::1"])
def test_a_bad_base_url_is_refused_whatever_the_source(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--base-url"):
        CrawlConfig([ClassSpec("cat")], tmp_path, source="urls", base_url=url).validate()
