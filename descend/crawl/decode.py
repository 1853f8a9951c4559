"""Turning downloaded bytes into a clean RGB JPEG, or a reason why not.

Runs in worker threads (Pillow releases the GIL while decoding), where
``warnings.catch_warnings`` is not safe to enter; so the decompression-bomb limit is also
checked directly against ``Image.MAX_IMAGE_PIXELS``, whether or not the caller (the crawler
does) has made Pillow's DecompressionBombWarning an error.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import imagehash
from PIL import Image, UnidentifiedImageError

from descend.data.images import BadImage, open_image

# Formats a web image can honestly be. Leaving out the rest matters: Pillow would hand EPS to
# Ghostscript, and exotic decoders are where parser bugs live.
Image.init()  # load every plugin so that the list below can be checked against what exists
WEB_FORMATS = tuple(
    f for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO", "AVIF") if f in Image.OPEN
)
JPEG_QUALITY = 95


class ImageRejected(Exception):
    """Bytes that are not a usable image; ``reason`` is ``kind`` or ``kind:detail``."""

    def __init__(self, reason: str, limit: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


@dataclass(frozen=True)
class CleanImage:
    """A decoded, converted image ready to keep: RGB JPEG bytes and its fingerprints."""

    jpeg: bytes
    sha256: str  # of the RGB pixels and size: the same picture re-saved has the same sha
    phash: int  # 64-bit perceptual hash, for near duplicates
    width: int
    height: int


def clean_image(data: bytes, min_size: int, content_type: str = "") -> CleanImage:
    """Decode ``data`` fully, apply EXIF orientation, convert to RGB and re-encode as JPEG.

    Rejects: empty bodies, non-images (HTML error pages served as .jpg), truncated or corrupt
    files, images over Pillow's pixel limit, and images narrower or lower than ``min_size``.
    """
    if not data:
        raise ImageRejected("empty")
    try:
        im = Image.open(io.BytesIO(data), formats=WEB_FORMATS)
    except UnidentifiedImageError:
        # The server's Content-Type goes into the manifest: only a short, printable one.
        kind = content_type.split(";")[0].strip().lower()[:60]
        kind = kind if kind.isascii() and kind.isprintable() else "?"
        raise ImageRejected(f"not-an-image:{kind}" if kind else "not-an-image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception when the crawl runs it as an error.
        raise ImageRejected("decompression-bomb") from None
    except Exception as e:  # noqa: BLE001  hostile bytes reach odd corners of the decoders
        raise ImageRejected(f"broken-image:{_short(e)}") from None
    width, height = im.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        # Pillow only warns between 1x and 2x its limit; here that is already a rejection.
        raise ImageRejected(f"decompression-bomb:{width}x{height}")
    if width < min_size or height < min_size:
        raise ImageRejected(f"too-small:{width}x{height}", limit=min_size)
    try:
        im.load()  # a truncated file fails here, not at open
        rgb = open_image(im)
    except BadImage as e:
        raise ImageRejected(f"broken-image:{e.reason}") from None
    except Image.DecompressionBombError:
        raise ImageRejected("decompression-bomb") from None
    except Exception as e:  # noqa: BLE001  as above: a bad file is a rejection, not a crash
        raise ImageRejected(f"broken-image:{_short(e)}") from None
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=JPEG_QUALITY)
    return CleanImage(
        jpeg=out.getvalue(),
        sha256=digest.hexdigest(),
        phash=int(str(imagehash.phash(rgb)), 16),
        width=rgb.width,
        height=rgb.height,
    )


def _short(error: BaseException) -> str:
    """A one-line, bounded message for the manifest."""
    return " ".join(str(error).split())[:120] or type(error).__name__
