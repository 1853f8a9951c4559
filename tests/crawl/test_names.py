from __future__ import annotations

import pytest

from descend.crawl.names import check_class_name, check_class_names, check_names_fit
from descend.errors import ConfigError


@pytest.mark.parametrize("name", ["cat", "猫", "big cat", "a.b", "golden_retriever-2", "Ä"])
def test_ordinary_names_pass_unchanged(name: str) -> None:
    assert check_class_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        (".", "starts with '.'"),
        ("..", "starts with '.'"),
        ("../../etc", "'/'"),
        ("a/b", "'/'"),
        ("/etc", "'/'"),
        ("a\\b", "'\\\\'"),
        ("C:x", "':'"),
        (".hidden", "starts with '.'"),
        (" cat", "space"),
        ("cat.", "ends with '.'"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("NUL", "reserved"),
        ("com1.txt", "reserved"),
        ("x" * 101, "longer"),
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match="cannot be a folder name") as info:
        check_class_name(name)
    assert why in str(info.value)


def test_names_that_differ_only_in_case_would_share_a_folder() -> None:
    with pytest.raises(ConfigError, match="share one folder"):
        check_class_names(["Cat", "cat"])
    assert check_class_names(["cat", "dog"]) == ["cat", "dog"]


def test_the_byte_length_counts_not_the_characters() -> None:
    assert check_class_name("猫" * 85) == "猫" * 85  # 255 bytes: the most a folder name holds
    with pytest.raises(ConfigError, match="256 bytes in UTF-8"):
        check_class_name("猫" * 85 + "a")


def test_names_are_checked_against_the_file_systems_own_limit() -> None:
    check_names_fit(["猫" * 47], 143, "/home/me")  # eCryptfs: 143 bytes
    with pytest.raises(ConfigError, match=r"144 bytes .* allows 143"):
        check_names_fit(["a", "猫" * 48], 143, "/home/me")
