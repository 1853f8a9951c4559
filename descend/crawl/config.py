"""What one crawl asks for: the classes and their search words, the limits, the output folder."""

from __future__ import annotations

import math
import re
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from descend.crawl.address import AddressPolicy
from descend.crawl.names import check_class_names
from descend.errors import ConfigError

# The seed's User-Agent: Baidu answers a bare client with an empty or anti-crawler page.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Safari/537.36 Edg/138.0.0.0"
)


@dataclass(frozen=True)
class ClassSpec:
    """One class: its folder name and the search words whose results it collects."""

    name: str
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.words:
            object.__setattr__(self, "words", (self.name,))


def parse_class_spec(text: str) -> ClassSpec:
    """``cat=猫,小猫`` -> ClassSpec("cat", ("猫", "小猫")); ``cat`` alone searches for "cat"."""
    name, sep, words = text.partition("=")
    name = name.strip()
    if not sep:
        return ClassSpec(name)
    parsed = tuple(w.strip() for w in words.split(",") if w.strip())
    if not parsed:
        raise ConfigError(f"--class {text!r} names no search word; write --class {name}=WORD")
    return ClassSpec(name, parsed)


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


# One attempt may take up to a day. inf (or 1e300) would let a server that never finishes its
# answer hold a download slot for good, and with --concurrency of them the crawl never ends.
MAX_TIMEOUT = 86400.0

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``"10MB"`` -> 10485760. Units are binary (k = 1024); a bare number counts bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"size {text!r} is not understood; write e.g. 500k, 10MB or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class CrawlConfig:
    """Everything one crawl needs; the command line and the Python API fill this same object."""

    classes: list[ClassSpec]
    out: Path
    _: KW_ONLY  # every setting after these two by name
    per_class: int = 100
    source: str = "baidu"
    base_url: str | None = None  # replaces the source's scheme://host[:port]; tests use it
    # The source's own options by name (`Source.options`), e.g. {"urls_file": Path("pets.txt")}
    # for source "urls"; a source is given only the ones it takes.
    source_options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2
    seed: int = 0
    min_size: int = 32  # smaller width or height is useless at any training resolution
    concurrency: int = 8  # parallel downloads: hides network latency, not bandwidth
    rate: float | None = None  # requests per second per host; None is unlimited
    max_bytes: int = 10 << 20  # one file; a 10 MiB JPEG is already a 40-megapixel photo
    max_total_bytes: int | None = None  # everything this run downloads
    timeout: float = 30.0  # one attempt, connect to last byte
    retries: int = 3  # further attempts after timeouts, connection errors, 429 and 5xx
    backoff: float = 0.5  # first retry waits about this long, doubling each time
    max_retry_after: float = 60.0  # a server's Retry-After is honoured up to this many seconds
    max_redirects: int = 5
    phash_distance: int = 6  # near duplicate: perceptual hashes differing in <= this many bits
    progress: bool = True
    user_agent: str = BROWSER_USER_AGENT
    max_pages: int = 50  # per search word; a source that never stops paging is cut off here
    # Loopback, private, link-local (169.254.169.254) and other non-public addresses are
    # refused unless named by base_url (its host:port) or allowed all at once here.
    allow_private_addresses: bool = False

    def validate(self) -> CrawlConfig:
        """Raise `ConfigError` for values that cannot work; return self."""
        check_class_names([c.name for c in self.classes])
        for name in self.source_options:
            if name in {f.name for f in fields(self)}:
                raise ConfigError(f"{name} is a setting of the whole crawl: give it as {name}=, "
                                  "not in source_options")
        if self.base_url is not None:
            # Every source, even one that does not use it: the base URL also opts its host:port
            # in to private addresses, so it must be a URL whatever the source.
            AddressPolicy.for_crawl([check_base_url(self.base_url)], allow_private=False)
        finite = {name: value for name, value in (
            ("--timeout", self.timeout), ("--rate", self.rate), ("--backoff", self.backoff),
            ("--val-fraction", self.val_fraction), ("max_retry_after", self.max_retry_after),
        ) if value is not None}
        for flag, value in finite.items():
            # inf passes "> 0" and nan fails every comparison; both mean nothing as a setting.
            if not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number, not {value}")
        checks = [
            (self.per_class >= 1, f"--per-class must be at least 1, not {self.per_class}"),
            (0 <= self.val_fraction < 1,
             f"--val-fraction must be in [0, 1), not {self.val_fraction}"),
            (self.min_size >= 1, f"--min-size must be at least 1 pixel, not {self.min_size}"),
            (self.concurrency >= 1, f"--concurrency must be at least 1, not {self.concurrency}"),
            (self.rate is None or self.rate > 0, f"--rate must be positive, not {self.rate}"),
            (self.max_bytes >= 1, f"--max-bytes must be positive, not {self.max_bytes}"),
            (self.max_total_bytes is None or self.max_total_bytes >= 1,
             f"--max-total-bytes must be positive, not {self.max_total_bytes}"),
            (0 < self.timeout <= MAX_TIMEOUT,
             f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, "
             f"not {self.timeout}"),
            (self.retries >= 0, f"--retries cannot be negative ({self.retries})"),
            (self.backoff >= 0, f"--backoff cannot be negative ({self.backoff})"),
            (self.max_retry_after >= 0, "max_retry_after cannot be negative"),
            (0 <= self.phash_distance <= 64, "--phash-distance must be in [0, 64]"),
            (self.max_redirects >= 0, "max_redirects cannot be negative"),
            (self.max_pages >= 1, "max_pages must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if not self.classes:
            raise ConfigError("no class to crawl: give --class NAME=WORD (once per class)")
        return self
