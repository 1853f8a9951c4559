"""Fixtures of the data tests: files made to order."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest


def _huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares ``width`` x ``height``: a decompression bomb that
    costs nothing to store (the pixel data is a few zero bytes, far too short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.fixture
def huge_png_header() -> Callable[[int, int], bytes]:
    return _huge_png_header
