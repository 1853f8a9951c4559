from __future__ import annotations

import asyncio
import gzip
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx

from descend.crawl.fetch import Fetched, Fetcher, FetchError, parse_retry_after, retry_delay
from descend.crawl.limits import ByteBudget, HostRateLimiter
from tests.support.fakeweb import FakeWeb, Route, gzipped_zeros


def _fetch(web: FakeWeb, urls: list[str], **options: Any) -> list[Fetched | FetchError]:
    """GET each URL with one Fetcher; returns bodies or the FetchError each ended with."""
    settings: dict[str, Any] = dict(concurrency=4, rate=HostRateLimiter(None),
                                    budget=ByteBudget(None), timeout=2.0, retries=3,
                                    backoff=0.01, max_retry_after=0.3, max_redirects=5,
                                    max_bytes=100_000, rng=random.Random(0))
    settings.update(options)

    async def go() -> list[Fetched | FetchError]:
        async with httpx.AsyncClient() as client:
            fetcher = Fetcher(client, **settings)

            async def one(url: str) -> Fetched | FetchError:
                try:
                    return await fetcher.get(url)
                except FetchError as e:
                    return e

            return list(await asyncio.gather(*(one(u) for u in urls)))

    return asyncio.run(go())


def _reason(result: Fetched | FetchError) -> tuple[str, bool]:
    assert isinstance(result, FetchError), f"expected a failure, got {result}"
    return result.reason, result.permanent


def test_success_and_redirect_chain(web: FakeWeb) -> None:
    web.add("/a.jpg", b"abc")
    web.add("/r1", Route(status=302, headers={"Location": "/r2"}))
    web.add("/r2", Route(status=301, headers={"Location": f"{web.url}/a.jpg"}))
    plain, redirected = _fetch(web, [web.url + "/a.jpg", web.url + "/r1"])
    assert isinstance(plain, Fetched) and plain.body == b"abc"
    assert isinstance(redirected, Fetched) and redirected.url == web.url + "/a.jpg"


def test_429_then_ok_honours_retry_after_up_to_the_cap(web: FakeWeb) -> None:
    url = web.add("/busy.jpg", Route(b"ok", failures=[429], retry_after="30"))
    start = time.perf_counter()
    [result] = _fetch(web, [url], max_retry_after=0.3)
    elapsed = time.perf_counter() - start
    assert isinstance(result, Fetched) and result.body == b"ok"
    assert 0.3 <= elapsed < 2.0  # waited the capped Retry-After, not 30 s
    assert web.requested("/busy.jpg") == 2


def test_500_three_times_then_ok_and_five_times_gives_up(web: FakeWeb) -> None:
    three = web.add("/three.jpg", Route(b"ok", failures=[500, 502, 503]))
    five = web.add("/five.jpg", Route(b"ok", failures=[500] * 5))
    ok, failed = _fetch(web, [three, five], retries=3)
    assert isinstance(ok, Fetched) and web.requested("/three.jpg") == 4
    assert _reason(failed) == ("http-500", False)  # worth trying in a later run
    assert web.requested("/five.jpg") == 4


def test_permanent_failures_are_not_retried(web: FakeWeb) -> None:
    web.add("/loop1", Route(status=302, headers={"Location": "/loop2"}))
    web.add("/loop2", Route(status=302, headers={"Location": "/loop1"}))
    web.add("/to-file", Route(status=302, headers={"Location": "file:///etc/passwd"}))
    web.add("/forbidden.jpg", Route(b"no", status=403))
    results = _fetch(web, [web.url + "/missing.jpg", web.url + "/loop1", web.url + "/to-file",
                           web.url + "/forbidden.jpg", "ftp://example.com/a.jpg",
                           "data:image/png;base64,iVBORw0KGgo=", "file:///etc/passwd",
                           "http:///nohost.jpg"])
    assert [_reason(r) for r in results] == [
        ("http-404", True),
        ("too-many-redirects:>5", True),
        ("bad-redirect:file", True),
        ("http-403", True),
        ("bad-scheme:ftp", True),
        ("bad-scheme:data", True),
        ("bad-scheme:file", True),
        ("bad-url:no-host", True),
    ]
    assert web.requested("/missing.jpg") == 1 and web.requested("/forbidden.jpg") == 1
    assert web.requested("/loop1") == 3 and web.requested("/loop2") == 3  # 6 hops, then stop


def test_size_cap_with_and_without_content_length(web: FakeWeb) -> None:
    big = b"x" * 300_000
    declared = web.add("/declared.jpg", big)
    streamed = web.add("/streamed.jpg", Route(big, chunked=True))
    small_chunked = web.add("/small.jpg", Route(b"y" * 50_000, chunked=True))
    r1, r2, r3 = _fetch(web, [declared, streamed, small_chunked], max_bytes=100_000)
    assert _reason(r1) == ("too-large:300000>100000", True)
    assert _reason(r2) == ("too-large:>100000", True)
    assert isinstance(r3, Fetched) and len(r3.body) == 50_000


def test_total_cap_is_never_passed(web: FakeWeb) -> None:
    urls = [web.add(f"/{i}.jpg", Route(b"z" * 40_000, chunked=True)) for i in range(5)]
    budget = ByteBudget(100_000)
    results = _fetch(web, urls, budget=budget, concurrency=1)
    assert sum(isinstance(r, Fetched) for r in results) == 2
    assert {_reason(r) for r in results if isinstance(r, FetchError)} == {("total-size-cap",
                                                                           False)}
    assert budget.used <= 100_000 and budget.exhausted


def test_a_slow_server_times_out_and_counts_as_transient(web: FakeWeb) -> None:
    url = web.add("/slow.jpg", Route(b"late", delay=3.0))
    start = time.perf_counter()
    [result] = _fetch(web, [url], timeout=0.3, retries=1)
    assert _reason(result) == ("timeout", False)
    assert time.perf_counter() - start < 2.0
    assert web.requested("/slow.jpg") == 2


def test_per_host_rate_limit_spaces_request_starts(web: FakeWeb) -> None:
    urls = [web.add(f"/r{i}.jpg", b"ok") for i in range(6)]
    start = time.perf_counter()
    results = _fetch(web, urls, rate=HostRateLimiter(10.0), concurrency=6)
    assert all(isinstance(r, Fetched) for r in results)
    assert time.perf_counter() - start >= 0.5  # 6 starts at 10/s: the last at >= 0.5 s


def test_rate_limiter_keeps_hosts_apart() -> None:
    limiter = HostRateLimiter(5.0)

    async def starts(hosts: list[str]) -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(limiter.wait(h) for h in hosts))
        return time.perf_counter() - t0

    assert asyncio.run(starts(["a", "b", "c", "d"])) < 0.1  # one each: nobody waits
    assert asyncio.run(starts(["e", "e", "e"])) >= 0.35


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays: Callable[[int], list[float]] = lambda a: [
        retry_delay(a, 0.5, None, 60.0, rng) for _ in range(200)
    ]
    for attempt in range(4):
        base = 0.5 * 2**attempt
        d = delays(attempt)
        assert base / 2 <= min(d) and max(d) <= base and max(d) - min(d) > base / 4
    assert retry_delay(20, 0.5, None, 60.0, rng) <= 60.0
    assert retry_delay(0, 0.5, 120.0, 60.0, rng) == 60.0  # Retry-After honoured up to the cap
    assert retry_delay(0, 0.5, 2.0, 60.0, rng) == 2.0




def test_identity_is_asked_for_and_compressed_answers_are_decoded(web: FakeWeb) -> None:
    body = bytes(range(256)) * 100
    gz = web.add("/gz.jpg", Route(gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    twice = web.add("/twice.jpg", Route(gzip.compress(gzip.compress(body)), chunked=True,
                                        headers={"Content-Encoding": "gzip, gzip"}))
    br = web.add("/br.jpg", Route(b"\x8b\x02\x80hello\x03", headers={"Content-Encoding": "br"}))
    bad = web.add("/bad.jpg", Route(b"\x1f\x8b\x08\x00garbage-garbage",
                                    headers={"Content-Encoding": "gzip"}))
    r1, r2, r3, r4 = _fetch(web, [gz, twice, br, bad], concurrency=1)
    assert isinstance(r1, Fetched) and r1.body == body
    assert isinstance(r2, Fetched) and r2.body == body
    assert _reason(r3) == ("bad-encoding:br", True)
    assert _reason(r4) == ("bad-encoding:gzip", True)
    assert {h.get("accept-encoding") for h in web.headers} == {"identity"}


def test_a_gzip_bomb_is_too_large_after_a_few_megabytes_not_a_gigabyte(web: FakeWeb) -> None:
    bomb = gzip.compress(gzipped_zeros(1024))  # 2.5 kB on the wire, 1 GiB decoded
    url = web.add("/bomb.jpg", Route(bomb, headers={"Content-Encoding": "gzip, gzip"}))
    budget = ByteBudget(None)
    tracemalloc.start()
    try:
        [result] = _fetch(web, [url], max_bytes=2 << 20, budget=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _reason(result) == (f"too-large:>{2 << 20}", True)
    assert peak < 16 << 20  # the cap and a piece or two; httpx alone would hold the whole GiB
    assert budget.used <= 2 << 20  # decoded bytes are what the total cap counts


def test_a_body_that_decodes_to_nothing_still_counts_its_raw_bytes(web: FakeWeb) -> None:
    # A tiny gzip member, then megabytes of trailing junk that no decoder ever outputs.
    body = gzip.compress(b"x") + b"\0" * 300_000
    url = web.add("/junk.jpg", Route(body, chunked=True, headers={"Content-Encoding": "gzip"}))
    [result] = _fetch(web, [url], max_bytes=100_000)
    assert _reason(result) == ("too-large:>100000", True)


def test_a_retry_after_that_is_a_digit_but_not_a_number_is_ignored(web: FakeWeb) -> None:
    # "²" is str.isdigit() but float("²") raises: the header used to crash the crawl.
    url = web.add("/sq.jpg", Route(b"ok", failures=[429], retry_after="\u00b2"))
    [result] = _fetch(web, [url])
    assert isinstance(result, Fetched) and result.body == b"ok"
    assert parse_retry_after("\u00b2") is None and parse_retry_after("\u0663") is None


def test_backoff_of_a_huge_number_of_retries_does_not_overflow() -> None:
    assert retry_delay(5000, 0.5, None, 60.0, random.Random(0)) <= 60.0
