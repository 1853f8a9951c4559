"""Open any image file safely and turn it into RGB (or grey) pixels of the training size.

A file is read as Pillow needs it, never whole: a 3 GB file named ``.jpg`` costs its first bytes,
not 3 GB. Only regular files are opened (a FIFO would block forever, a device never end), and
the reasons a file cannot be used are `BadImage` reasons, never a crash.

Odd modes are converted correctly rather than by Pillow's defaults: transparency is composited
on white (a transparent background is not black), CMYK and 16-bit images are mapped to 8-bit,
EXIF orientation is applied, an animated image gives its first frame, and an image over the
pixel limit (Pillow's ``Image.MAX_IMAGE_PIXELS``, a decompression-bomb guard, or the caller's
``max_pixels``: ``descend serve`` derives one from the model's input size) is refused from its
header, before any pixel is decoded.

Work and memory are bounded by the picture, not by its format's worst case: a JPEG is decoded at
a reduced scale when the target is small (`Image.draft`; PNG, TIFF and WebP have no reduced
decode in Pillow, so their one full-size copy is the decoded one), 16-bit, 32-bit and float
pixels are mapped to 8 bits in strips, and a grey picture stays one band until it is resized.

The limit is checked directly rather than by turning Pillow's warning into an error, because
``warnings.catch_warnings`` is not safe in the decoding threads. This module imports neither
torch nor anything heavy, so that decoding worker processes start fast.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from descend.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# Decoding a JPEG at 1/2, 1/4 or 1/8 scale (`Image.draft`) is 2-3 times faster than decoding
# it whole. The reduced decode is a box filter over DCT blocks, so it asks for four times the
# target size and leaves the last factor of 4 or more to the antialiased resize: at twice the
# size (Pillow's `thumbnail` margin) a noisy test photo differed from the full decode by 3.3
# grey levels on average, at four times by 0.3.
DRAFT_MARGIN = 4
# Resizing by a big factor first reduces by whole pixels (a box filter), then resamples the rest:
# Pillow documents the result as indistinguishable from a direct resize at a gap of 3.
REDUCING_GAP = 3.0


class BadImage(DataError):
    """A file that is not a usable image; ``reason`` is a short machine-readable word.

    Reasons: ``missing``, ``not-a-file`` (a folder, FIFO, socket or device), ``unreadable``
    (the system refuses to read it), ``empty``, ``not-an-image``, ``corrupt``, ``too-large``
    (over the decompression-bomb limit), ``too-small`` (a side under the caller's ``min_size``).
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path, self.reason, self.detail = path, reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


# Modes of more than 8 bits per pixel, all one band: 16-bit grey (PNG, TIFF), 32-bit integer and
# float grey (TIFF). Each is mapped to 8-bit grey.
DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# Pixels converted at a time from a deep mode: the float64 arithmetic on a strip costs 8 bytes a
# pixel, so a strip of 1 M pixels is 8 MB whatever the picture's size.
STRIP_PIXELS = 2**20


def _to_rgb_or_grey(im: Image.Image) -> Image.Image:
    """``im`` as RGB, or as 8-bit grey when it is grey (L, or a deep mode mapped to 8 bits).

    Grey stays one band until after the resize: expanding it to RGB first would copy the whole
    picture at 4 bytes a pixel, and resizing each of three equal bands gives the same pixels as
    resizing the one.
    """
    if im.mode in DEEP_MODES:
        return _deep_to_grey(im)
    if im.mode in ("L", "RGB"):
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    im = _to_rgb_or_grey(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _deep_to_grey(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grey image as 8-bit grey, its range scaled down to 8 bits
    instead of clipped at 255.

    16-bit images map 0-65535 to 0-255; 32-bit ones the same, or 0-255 as it is when no pixel
    passes 255; float ones their own lowest-highest range. The picture is converted in strips
    of rows into one 8-bit image: the only copy of it ever held besides the decoded one (a
    whole-picture float64 conversion cost 8 bytes a pixel, twice: 1.4 GB for a 9400x9400 PNG).
    """
    offset, divisor, rounding = 0.0, 65535.0, 0.5
    if im.mode in ("I", "F"):
        # Over the whole picture, with no copy of it: (lowest, highest) of the one band.
        lo, hi = cast("tuple[float, float]", im.getextrema())
        if im.mode == "F":
            offset, divisor, rounding = lo, hi - lo if hi > lo else 1.0, 0.0
        elif hi <= 255:
            divisor = 255.0
    width, height = im.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        strip = np.asarray(im.crop((0, top, width, bottom)), dtype=np.float64)
        strip = (strip - offset) / divisor * 255.0 + rounding
        np.clip(np.nan_to_num(strip, nan=0.0), 0, 255, out=strip)
        out[top:bottom] = strip  # truncation, after the rounding term
    return Image.fromarray(out, "L")


def _check_size(im: Image.Image, name: str, min_size: int,
                max_pixels: int | None = None) -> None:
    w, h = im.size
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if limit is not None and w * h > limit:
        raise BadImage(name, "too-large",
                       f"{w}x{h} = {w * h} pixels, over the limit of {int(limit)}")
    if min(w, h) < min_size:
        raise BadImage(name, "too-small", f"{w}x{h}, under {min_size} pixels on a side")


def open_image(
    source: str | os.PathLike[str] | bytes | Image.Image,
    *,
    draft: tuple[int, int] | None = None,
    min_size: int = 1,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode fully, apply EXIF orientation, return RGB; raise `BadImage` if unusable.

    ``draft`` (w, h): a JPEG may be decoded at a reduced scale that is still at least this
    large. ``min_size``: refuse an image with a side shorter than this many pixels.
    ``max_pixels``: refuse, from its header, an image of more pixels than this (None: Pillow's
    ``Image.MAX_IMAGE_PIXELS``).
    """
    return _to_rgb(_open(source, draft, min_size, max_pixels)[0])


# EXIF orientation -> the transposition that shows the picture upright (`ImageOps.exif_transpose`
# has the same table, but cannot say which one it applied, and copies an upright image whole).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
Box = tuple[float, float, float, float]


def _open(
    source: str | os.PathLike[str] | bytes | Image.Image,
    draft: tuple[int, int] | None,
    min_size: int,
    max_pixels: int | None = None,
) -> tuple[Image.Image, tuple[int, int], Box]:
    """`open_image` (but grey pictures as 8-bit grey, see `_to_rgb_or_grey`), the (width,
    height) the file declares, and the box of the image that the picture fills.

    The box is the whole image except after a reduced JPEG decode of a side that is not a
    multiple of the scale: 769 pixels at 1/8 decode to 97, of which the last holds 1/8 of a
    pixel of picture and 7/8 of the encoder's padding, so the picture is 96.125 pixels wide.
    Taken as 97 it would be stretched by up to a pixel and off-centre: up to 2.7 grey levels
    on average at 16x16 in tests/data/test_decode_corpus.py, against 0.4 with the box.
    """
    if isinstance(source, Image.Image):
        # A reduced decode: only ours.
        return _decode(source, str(source), None, min_size, max_pixels)
    if isinstance(source, bytes):
        if not source:
            raise BadImage("<bytes>", "empty", "zero bytes")
        return _decode(_identify(io.BytesIO(source), "<bytes>"), "<bytes>", draft, min_size,
                       max_pixels)
    name = os.fspath(source)
    with open_file(name) as f:  # open while decoding: Pillow reads the pixels as it goes
        return _decode(_identify(f, name), name, draft, min_size, max_pixels)


@contextmanager
def open_file(path: str) -> Iterator[BinaryIO]:
    """``path`` opened for reading, if it is a regular file with at least one readable byte;
    else `BadImage` (``missing``, ``not-a-file``, ``unreadable``, ``empty``).

    Opened without blocking and checked again once open, so that a FIFO put in a file's place
    cannot hang the caller; ``/proc/self/mem`` and the like open but fail on the first read.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # also a link to nothing
        raise BadImage(path, "missing", "no such file") from None
    except OSError as e:  # a link loop, no permission on the folder
        raise BadImage(path, "unreadable", e.strerror or str(e)) from None
    _check_regular(path, mode)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise BadImage(path, "unreadable", e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(fd).st_mode)
        try:
            first = f.read(1)
            f.seek(0)
        except OSError as e:
            raise BadImage(path, "unreadable", e.strerror or str(e)) from None
        if not first:
            raise BadImage(path, "empty", "zero bytes")
        yield f


def _check_regular(path: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device")
    raise BadImage(path, "not-a-file", f"{kind}, not a regular file")


def _identify(fp: BinaryIO, name: str) -> Image.Image:
    """Pillow's lazy open of ``fp``: the header only."""
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as e:
        raise BadImage(name, "too-large", str(e).split(".")[0]) from None
    except UnidentifiedImageError:
        raise BadImage(name, "not-an-image", "Pillow cannot identify it") from None
    except OSError as e:  # the file could not be read past its first byte
        if e.errno is not None:
            raise BadImage(name, "unreadable", e.strerror or str(e)) from None
        raise BadImage(name, "corrupt", str(e) or type(e).__name__) from None
    except Exception as e:  # a hostile file can trip any plugin: struct.error, ValueError...
        raise BadImage(name, "corrupt", str(e) or type(e).__name__) from None


def _decode(im: Image.Image, name: str, draft: tuple[int, int] | None, min_size: int,
            max_pixels: int | None = None) -> tuple[Image.Image, tuple[int, int], Box]:
    """The pixels of an identified image, upright and RGB or 8-bit grey, with its declared size
    and box."""
    _check_size(im, name, min_size, max_pixels)
    declared = im.size
    box: Box = (0, 0, *declared)
    if draft is not None and im.format == "JPEG":
        reduced = im.draft(None, draft)
        if reduced is not None:
            box = reduced[1]
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise BadImage(name, "too-large", str(e).split(".")[0]) from None
    except OSError as e:
        if e.errno is not None:  # the system failed a read: not a fault of the image
            raise BadImage(name, "unreadable", e.strerror or str(e)) from None
        raise BadImage(name, "corrupt", str(e) or type(e).__name__) from None
    except Exception as e:
        raise BadImage(name, "corrupt", str(e) or type(e).__name__) from None
    try:
        upright = _UPRIGHT.get(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        upright = None
    if upright is not None:
        box = _transpose_box(box, im.size, upright)
        im = im.transpose(upright)
    return _to_rgb_or_grey(im), declared, box


def _transpose_box(box: Box, size: tuple[int, int], method: Image.Transpose) -> Box:
    """``box`` of an image of ``size`` where it lies after ``im.transpose(method)``.

    Each method is a transposition (or none) followed by flips: ``ROTATE_90`` is ``TRANSPOSE``
    then ``FLIP_TOP_BOTTOM``, ``ROTATE_270`` is ``TRANSPOSE`` then ``FLIP_LEFT_RIGHT``.
    """
    x0, y0, x1, y1 = box
    width, height = size
    T = Image.Transpose
    if method in (T.TRANSPOSE, T.TRANSVERSE, T.ROTATE_90, T.ROTATE_270):
        x0, y0, x1, y1, width, height = y0, x0, y1, x1, height, width
    if method in (T.FLIP_LEFT_RIGHT, T.ROTATE_180, T.TRANSVERSE, T.ROTATE_270):
        x0, x1 = width - x1, width - x0
    if method in (T.FLIP_TOP_BOTTOM, T.ROTATE_180, T.TRANSVERSE, T.ROTATE_90):
        y0, y1 = height - y1, height - y0
    return x0, y0, x1, y1


def fit(im: Image.Image, size: tuple[int, int], resize: int | None = None,
        box: Box | None = None) -> Image.Image:
    """Scale, then centre-crop to ``size`` (h, w): no squashing.

    Without ``resize`` the image is scaled to just cover ``size`` (torchvision's
    ``Resize(s)`` then ``CenterCrop(s)``); with it, the shorter side becomes ``resize`` pixels
    first (``Resize(resize)`` then ``CenterCrop(size)``, e.g. 256 then 224). ``box``
    (x0, y0, x1, y1): the part of ``im`` that holds the picture, in fractional pixels (None:
    all of it).
    """
    h, w = size
    x0, y0, x1, y1 = box or (0, 0, *im.size)
    width, height = x1 - x0, y1 - y0
    if resize is None:
        scale = max(w / width, h / height)
    elif resize < max(h, w):
        raise ValueError(f"resize {resize} is smaller than the crop {w}x{h}: crop at most the "
                         f"resized size")
    else:
        scale = resize / min(width, height)
    if (x0, y0, x1, y1) == (0, 0, *im.size) == (0, 0, w, h) and scale == 1:
        return im
    # The crop window in source pixels: the centred (w, h) window of the scaled picture. On the
    # side that sets the scale it is the whole side, but w / (w / width) can come out a hair over
    # width, and width / 2 - w / scale / 2 a hair under 0 (-7e-15 for 417x500 at 64x64): Pillow
    # refuses a box outside the image ("box offset can't be negative"), so the window is capped
    # at the picture, placed from its size, and kept inside the image.
    crop_w, crop_h = min(w / scale, width), min(h / scale, height)
    left, top = x0 + (width - crop_w) / 2, y0 + (height - crop_h) / 2
    window = (max(left, 0.0), max(top, 0.0),
              min(left + crop_w, im.width), min(top + crop_h, im.height))
    return im.resize((w, h), Image.Resampling.BILINEAR, box=window,
                     reducing_gap=REDUCING_GAP if scale < 1 / REDUCING_GAP else None)


def load_pixels(
    source: str | os.PathLike[str] | bytes | Image.Image,
    size: tuple[int, int] | None,
    channels: int = 3,
    *,
    resize: int | None = None,
    min_size: int = 1,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode ``source`` into a uint8 array of shape (channels, h, w) at the training size.

    ``max_pixels``: refuse, from its header, an image of more pixels than this (None: Pillow's
    ``Image.MAX_IMAGE_PIXELS``, the limit training uses).
    """
    return _load(source, size, channels, resize, min_size, max_pixels)[0]


def _load(
    source: str | os.PathLike[str] | bytes | Image.Image,
    size: tuple[int, int] | None,
    channels: int,
    resize: int | None,
    min_size: int,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    draft = None
    if size is not None:
        side = DRAFT_MARGIN * max(resize or 0, *size)  # square: EXIF may swap the sides
        draft = (side, side)
    im, declared, box = _open(source, draft, min_size, max_pixels)
    if size is not None:
        im = fit(im, size, resize, box)
    if channels == 1:
        return np.array(im.convert("L"), dtype=np.uint8)[None], declared
    if im.mode != "RGB":  # grey, expanded now that it has the training size
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)), declared


def decode_many(
    paths: list[str],
    size: tuple[int, int],
    channels: int,
    resize: int | None = None,
    min_size: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Decode ``paths`` in this process: (pixels (n, C, h, w), ok (n,), sizes (n, 2), skipped).

    ``sizes`` is each file's (width, height) as stored. The unit of work of the decoding pool:
    it takes and returns only plain data, so it runs as well in a worker process.
    """
    out = np.zeros((len(paths), channels, *size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    sizes = np.zeros((len(paths), 2), dtype=np.int32)
    skipped: list[dict[str, str]] = []
    for i, path in enumerate(paths):
        try:
            out[i], sizes[i] = _load(path, size, channels, resize, min_size)
            ok[i] = True
        except BadImage as e:
            skipped.append({"path": path, "reason": e.reason, "detail": e.detail})
        except Exception as e:  # a conversion Pillow cannot do: skip the file, not the run
            skipped.append({"path": path, "reason": "corrupt",
                            "detail": f"{type(e).__name__}: {e}"})
    return out, ok, sizes, skipped


def check_many(paths: list[str], min_size: int = 1) -> tuple[np.ndarray, np.ndarray,
                                                              list[dict[str, str]]]:
    """Header-only checks for the streaming path: (ok (n,), sizes (n, 2), skipped).

    Catches what can be known without decoding pixels: empty files, non-images, a header
    beyond the pixel limit or under ``min_size``. A file corrupt further in is found when the
    streaming loader decodes it, and is dropped from its batch and listed then.
    """
    ok = np.zeros(len(paths), dtype=bool)
    sizes = np.zeros((len(paths), 2), dtype=np.int32)
    skipped: list[dict[str, str]] = []
    for i, path in enumerate(paths):
        try:
            with open_file(path) as f, _identify(f, path) as im:
                _check_size(im, path, min_size)
                sizes[i] = im.size
            ok[i] = True
        except BadImage as e:
            skipped.append({"path": path, "reason": e.reason, "detail": e.detail})
    return ok, sizes, skipped
