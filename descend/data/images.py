"""Open any image file safely and turn it into RGB (or grey) pixels of the training size.

Odd modes are converted correctly rather than by Pillow's defaults: transparency is composited
on white (a transparent background is not black), CMYK and 16-bit images are mapped to 8-bit,
EXIF orientation is applied, and Pillow's decompression-bomb guard is an error, not a warning.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from descend.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


class BadImage(DataError):
    """A file that is not a usable image; ``reason`` is a short machine-readable word."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path, self.reason, self.detail = path, reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale the real range down to 8 bits instead of clipping at 255.
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        im = Image.fromarray(scaled.astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def open_image(source: str | os.PathLike[str] | bytes | Image.Image) -> Image.Image:
    """Decode fully, apply EXIF orientation, return RGB; raise `BadImage` if unusable."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if isinstance(source, Image.Image):
        im = source
    else:
        if not isinstance(source, bytes):
            path = Path(source)
            if not path.is_file():
                raise BadImage(name, "missing", "no such file")
            if path.stat().st_size == 0:
                raise BadImage(name, "empty", "zero bytes")
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data))
                im.load()
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise BadImage(name, "too-large", str(e).split(".")[0]) from None
            except UnidentifiedImageError:
                raise BadImage(name, "not-an-image", "Pillow cannot identify it") from None
            except (OSError, SyntaxError, ValueError) as e:
                raise BadImage(name, "corrupt", str(e)) from None
    try:
        im = ImageOps.exif_transpose(im) or im
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        pass
    return _to_rgb(im)


def fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize the shorter side to fit ``size`` (h, w), then centre-crop: no squashing."""
    h, w = size
    if im.size == (w, h):
        return im
    return ImageOps.fit(im, (w, h), method=Image.Resampling.BILINEAR)


def load_pixels(
    source: str | os.PathLike[str] | bytes | Image.Image,
    size: tuple[int, int] | None,
    channels: int = 3,
) -> np.ndarray:
    """Decode ``source`` into a uint8 array of shape (channels, h, w) at the training size."""
    im = open_image(source)
    if size is not None:
        im = fit(im, size)
    if channels == 1:
        return np.array(im.convert("L"), dtype=np.uint8)[None]
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
