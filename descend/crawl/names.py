"""Class names become folder names only after this check: nothing can escape the output folder."""

from __future__ import annotations

import re
import unicodedata

from descend.errors import ConfigError

# Characters that are separators or special on some file system (Windows forbids the rest).
_FORBIDDEN = set('/\\:*?"<>|')
# Names Windows reserves for devices whatever the extension; a folder called NUL is unusable there.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)
MAX_LENGTH = 100
# A name component on ext4, XFS, btrfs, ZFS and APFS holds 255 bytes, and a UTF-8 CJK character
# takes three: 90 characters pass MAX_LENGTH but not the file system.
MAX_NAME_BYTES = 255


def check_class_name(name: str) -> str:
    """Return ``name`` if it is safe as one folder name, else raise `ConfigError` saying why.

    Names are rejected rather than rewritten: a class name is a label that ends up in checkpoints
    and predictions, and silently changing it (``a/b`` -> ``a_b``) would surprise more than an
    error does. Any language is fine (``猫``); separators, ``..``, hidden names and control
    characters are not.
    """
    problem = _problem(name)
    if problem:
        raise ConfigError(
            f"class name {name!r} cannot be a folder name: {problem}; use letters, digits, "
            "spaces, '-', '_' or '.' (not first), e.g. --class big_cat=老虎"
        )
    return name


def _problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with a space"
    if len(name) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"it takes {size} bytes in UTF-8, more than the {MAX_NAME_BYTES} a folder name may"
    bad = sorted({c for c in name if c in _FORBIDDEN})
    if bad:
        return f"it contains {' '.join(repr(c) for c in bad)}"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "it contains a control or invisible character"
    if name.startswith("."):
        return "it starts with '.' ('.', '..' and hidden folders are not allowed)"
    if name.endswith("."):
        return "it ends with '.'"
    if _RESERVED.match(name):
        return "it is a device name reserved on Windows"
    return None


def check_names_fit(names: list[str], limit: int, where: str) -> None:
    """Raise `ConfigError` for the first name longer than ``limit`` bytes, the longest name
    the file system under ``where`` allows (eCryptfs allows 143, most allow 255)."""
    for name in names:
        size = len(name.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise ConfigError(
                f"class name {name!r} cannot be a folder name in {where}: it takes {size} bytes "
                f"in UTF-8 and that file system allows {limit}; choose a shorter name (the "
                "search words may stay long: --class short_name=WORDS)"
            )


def check_class_names(names: list[str]) -> list[str]:
    """Check every name, and that no two names share a folder on a case-insensitive disk."""
    seen: dict[str, str] = {}
    for name in names:
        check_class_name(name)
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            raise ConfigError(
                f"classes {seen[key]!r} and {name!r} would share one folder (names must differ "
                "in more than letter case); merge them into one --class with several words"
            )
        seen[key] = name
    return names
