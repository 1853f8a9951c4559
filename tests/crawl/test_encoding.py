"""Content-Encoding undone piece by piece: the size cap sees every decoded byte as it comes."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from descend.crawl.encoding import STEP, ContentDecoder, EncodingError
from tests.support.fakeweb import gzipped_zeros


def _decode(header: str, body: bytes, feed: int = 10_000) -> bytes:
    decoder = ContentDecoder(header)
    pieces = [p for i in range(0, len(body), feed) for p in decoder.feed(body[i:i + feed])]
    assert all(0 < len(p) <= STEP for p in pieces)
    return b"".join(pieces)


def test_every_supported_coding_round_trips_whatever_the_chunking() -> None:
    data = bytes(range(256)) * 600  # 150 kB: a few STEPs
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    encodings = {
        "": data,
        "identity": data,
        "gzip": gzip.compress(data),
        "x-gzip": gzip.compress(data),
        "deflate": zlib.compress(data),  # zlib-wrapped, as RFC 9110 says
        "Deflate ": raw_deflate.compress(data) + raw_deflate.flush(),  # raw, as some servers do
        "gzip, gzip": gzip.compress(gzip.compress(data)),
        "deflate, identity, gzip": gzip.compress(zlib.compress(data)),
    }
    for header, body in encodings.items():
        for feed in (1 if len(body) < 20_000 else 3, 7, 10_000, len(body)):
            assert _decode(header, body, feed) == data, (header, feed)


def test_bytes_after_the_end_of_a_stream_are_ignored() -> None:
    assert _decode("gzip", gzip.compress(b"picture") + b"trailing junk") == b"picture"


@pytest.mark.parametrize(("header", "reason"), [
    ("br", "bad-encoding:br"),
    ("gzip, zstd", "bad-encoding:zstd"),
    ("gzip, " * 5, "bad-encoding:5-codings"),
    ("gzip, " * 5000, "bad-encoding:5000-codings"),  # would be 5000 zlib windows, and recursion
])
def test_unknown_or_too_many_codings_are_refused_before_reading(header: str, reason: str) -> None:
    with pytest.raises(EncodingError) as info:
        ContentDecoder(header)
    assert info.value.reason == reason


def test_a_corrupt_body_is_an_encoding_error() -> None:
    with pytest.raises(EncodingError, match="bad-encoding:gzip"):
        list(ContentDecoder("gzip").feed(b"\x1f\x8b\x08\x00" + b"\xff" * 100))


def test_a_double_gzip_bomb_comes_out_one_small_piece_at_a_time() -> None:
    bomb = gzip.compress(gzipped_zeros(1024))  # 2.5 kB -> 1 MiB -> 1 GiB
    assert len(bomb) < 4000
    decoder = ContentDecoder("gzip, gzip")
    tracemalloc.start()
    try:
        taken = 0
        for piece in decoder.feed(bomb):  # the whole bomb in one network read
            assert len(piece) <= STEP
            taken += len(piece)
            if taken > 4 << 20:  # a 4 MiB cap, as the fetcher would apply it
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert taken <= (4 << 20) + STEP
    assert peak < 4 << 20  # a few pieces in flight, never the 1 GiB (httpx: one bytes object)
