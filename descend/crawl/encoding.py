"""Undoing a response's Content-Encoding a little at a time, so that the size cap sees every byte.

httpx inflates each received chunk whole before its caller can count anything: a 2 kB body
sent as ``Content-Encoding: gzip, gzip`` becomes a gigabyte in one call. The crawler asks for
``Accept-Encoding: identity``, reads the raw bytes, and undoes whatever encoding a server sends
anyway with `ContentDecoder`, which never hands out more than ``step`` bytes per piece and keeps
no layer's output waiting in memory: the caller's cap stops a bomb after the first piece past it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

STEP = 64 << 10  # bytes per decoded piece: one network read's worth
MAX_CODINGS = 4  # one is usual, two a misconfiguration; a thousand would be an attack


class EncodingError(Exception):
    """A Content-Encoding that is unknown, or a body that does not decode; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Inflater:
    """One gzip or deflate layer: compressed bytes in, at most ``n`` decoded bytes out per call."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.z: zlib._Decompress | None = None
        if coding != "deflate":  # gzip, x-gzip
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""  # input not yet consumed

    @property
    def done(self) -> bool:
        return self.z is not None and self.z.eof

    def inflate(self, n: int) -> bytes:
        if self.z is None:
            if len(self.pending) < 2:
                return b""  # too little to tell the two kinds apart yet
            # "deflate" should be zlib-wrapped (RFC 9110) but some servers send raw deflate.
            first = self.pending[:2]
            wrapped = first[0] & 0x0F == 8 and int.from_bytes(first, "big") % 31 == 0
            self.z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if self.z.eof:
            self.pending = b""
            return b""
        try:
            # Called even without new input: zlib may hold output that the last bound cut off.
            out = self.z.decompress(self.pending, n)
        except zlib.error:
            raise EncodingError(f"bad-encoding:{self.coding}") from None
        self.pending = self.z.unconsumed_tail
        return out


class ContentDecoder:
    """Decodes a body sent with ``Content-Encoding: header``, piece by piece.

    Supports identity, gzip (x-gzip) and deflate, in any chain; anything else (br, zstd,
    compress) raises `EncodingError` at once, before a byte is read.
    """

    def __init__(self, header: str, step: int = STEP) -> None:
        codings = [c.strip().lower() for c in header.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > MAX_CODINGS:
            raise EncodingError(f"bad-encoding:{len(codings)}-codings")
        for coding in codings:
            if coding not in ("gzip", "x-gzip", "deflate"):
                raise EncodingError(f"bad-encoding:{coding[:40]}")
        # The last coding applied is the first undone.
        self.layers = [_Inflater(c) for c in reversed(codings)]
        self.step = step

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces (each at most ``step`` bytes) that ``data`` completes."""
        if not self.layers:
            for i in range(0, len(data), self.step):
                yield data[i:i + self.step]
            return
        if not self.layers[0].done:
            self.layers[0].pending += data
        while piece := self._pull(len(self.layers) - 1):
            yield piece

    def _pull(self, i: int) -> bytes:
        """Up to ``step`` bytes out of layer ``i``, drawing on the layers below it as needed."""
        layer = self.layers[i]
        while True:
            out = layer.inflate(self.step)
            if out or i == 0 or layer.done:
                # Past the end of a layer nothing more is decoded (httpx ignores trailing bytes
                # too): inflating the layers below for nothing could take unbounded time.
                return out
            # Layer i needs input: one bounded piece from below, never more.
            below = self._pull(i - 1)
            if not below:
                return b""
            layer.pending += below
