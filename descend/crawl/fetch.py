"""Downloading one URL politely and safely: retries, back-off, caps, timeouts, checked redirects.

Every failure ends as a `FetchError` whose ``reason`` goes into the manifest and whose
``permanent`` flag says whether a later run should try the URL again (timeouts, connection
errors, 429 and 5xx are worth another run; a 404 or an ftp:// link is not).

The size cap counts decoded bytes as they arrive (see `descend.crawl.encoding`), and which
addresses a connection may reach is the client's transport's business (`descend.crawl.address`);
a refused address ends here as ``blocked-address:IP``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from descend.crawl.address import BlockedAddress
from descend.crawl.encoding import ContentDecoder, EncodingError
from descend.crawl.limits import ByteBudget, HostRateLimiter

ALLOWED_SCHEMES = ("http", "https")
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# Worth retrying: the server is busy or briefly broken, not refusing this URL for good.
RETRY_STATUS = frozenset({408, 425, 429} | set(range(500, 600)))
# Sent with every request: bodies arrive as they are stored, and a server that compresses anyway
# is decoded under the size cap by `ContentDecoder`, never by httpx.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}


class FetchError(Exception):
    """A URL that gave no usable body; ``reason`` is ``kind`` or ``kind:detail``."""

    def __init__(self, reason: str, *, permanent: bool, limit: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.limit = limit  # the cap that rejected it, so a later run with a higher one retries


class _Retry(Exception):
    """One failed attempt that another attempt may cure."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Fetched:
    """A complete body and where it finally came from."""

    body: bytes
    url: str
    content_type: str


def check_scheme(url: str | httpx.URL, what: str = "bad-scheme") -> httpx.URL:
    """``url`` parsed, or a permanent `FetchError` unless it is an http(s) URL with a host."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError("bad-url", permanent=True) from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError(f"{what}:{parsed.scheme or 'none'}", permanent=True)
    if not parsed.host:
        raise FetchError("bad-url:no-host", permanent=True)
    return parsed


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, but float("²") fails
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(
    attempt: int, backoff: float, retry_after: float | None, cap: float, rng: random.Random
) -> float:
    """Seconds before attempt ``attempt + 1``: the server's Retry-After if it sent one, else
    exponential back-off with "equal jitter" (half fixed, half random) so that many tasks
    failing together do not all come back at the same instant; never more than ``cap``."""
    if retry_after is not None:
        return min(retry_after, cap)
    base = min(backoff * (2.0 ** min(attempt, 1000)), cap)  # 2.0**1024 raises OverflowError
    return base / 2 + rng.random() * base / 2


class Fetcher:
    """GETs URLs through one `httpx.AsyncClient` under the crawl's shared limits."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        concurrency: int,
        rate: HostRateLimiter,
        budget: ByteBudget,
        timeout: float,
        retries: int,
        backoff: float,
        max_retry_after: float,
        max_redirects: int,
        max_bytes: int,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.slots = asyncio.Semaphore(concurrency)
        self.rate = rate
        self.budget = budget
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        self.rng = rng or random.Random()

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> Fetched:
        """The body of ``url``, following at most ``max_redirects`` checked redirects."""
        target = check_scheme(url)
        if params:
            target = target.copy_merge_params(dict(params))
        for attempt in range(self.retries + 1):
            if self.budget.exhausted:
                raise FetchError("total-size-cap", permanent=False)
            # Rate slot first, then a concurrency slot: a task waiting for its host's turn
            # should not block downloads from other hosts.
            await self.rate.wait(target.host)
            try:
                async with self.slots:
                    return await asyncio.wait_for(self._attempt(target), self.timeout)
            except _Retry as e:
                failure = e
            except (asyncio.TimeoutError, httpx.TimeoutException):
                failure = _Retry("timeout")
            except httpx.UnsupportedProtocol:
                raise FetchError("bad-scheme", permanent=True) from None
            except httpx.InvalidURL:
                raise FetchError("bad-url", permanent=True) from None
            except BlockedAddress as e:
                # A later run may allow it (--allow-private-addresses): see replay.still_rejects.
                raise FetchError(f"blocked-address:{e.address}", permanent=True) from None
            except httpx.TransportError as e:
                failure = _Retry(f"connection-error:{type(e).__name__}")
            if attempt == self.retries:
                raise FetchError(failure.reason, permanent=False)
            await asyncio.sleep(
                retry_delay(attempt, self.backoff, failure.retry_after, self.max_retry_after,
                            self.rng)
            )
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _attempt(self, url: httpx.URL) -> Fetched:
        for hop in range(self.max_redirects + 1):
            if hop:
                await self.rate.wait(url.host)
            async with self.client.stream("GET", url, headers=REQUEST_HEADERS) as response:
                status = response.status_code
                if status in REDIRECT_STATUS and "location" in response.headers:
                    # Each hop is checked again: a redirect to file:// or ftp:// is refused.
                    url = check_scheme(url.join(response.headers["location"]), "bad-redirect")
                    continue
                if status in RETRY_STATUS:
                    raise _Retry(f"http-{status}",
                                 parse_retry_after(response.headers.get("retry-after")))
                if not 200 <= status < 300:
                    raise FetchError(f"http-{status}", permanent=True)
                body = await self._read_capped(response)
                return Fetched(body, str(url), response.headers.get("content-type", ""))
        raise FetchError(f"too-many-redirects:>{self.max_redirects}", permanent=True)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The decoded body, refused as soon as it passes the per-file or the total cap.

        Both caps count decoded bytes, piece by piece as they come out of the decoder; the raw
        bytes count against the per-file cap too (a body that decodes to little, or nothing,
        is still no reason to read forever).
        """
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            # Refuse before reading a byte; the body may still be counted below if it lies.
            raise FetchError(f"too-large:{declared}>{self.max_bytes}", permanent=True,
                             limit=self.max_bytes)
        try:
            decoder = ContentDecoder(response.headers.get("content-encoding", ""))
            chunks: list[bytes] = []
            size = raw = 0
            async for data in response.aiter_raw():
                raw += len(data)
                if raw > self.max_bytes:
                    raise FetchError(f"too-large:>{self.max_bytes}", permanent=True,
                                     limit=self.max_bytes)
                for piece in decoder.feed(data):
                    size += len(piece)
                    if size > self.max_bytes:
                        raise FetchError(f"too-large:>{self.max_bytes}", permanent=True,
                                         limit=self.max_bytes)
                    if not self.budget.take(len(piece)):
                        raise FetchError("total-size-cap", permanent=False)
                    chunks.append(piece)
        except EncodingError as e:
            raise FetchError(e.reason, permanent=True) from None
        return b"".join(chunks)
