from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from descend.crawl.decode import CleanImage, ImageRejected, clean_image
from tests.support.fakeweb import jpeg, picture


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _pixels(clean: CleanImage) -> np.ndarray:
    image = Image.open(io.BytesIO(clean.jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    return np.asarray(image, dtype=np.int16)


def test_a_good_jpeg_is_kept_as_rgb_jpeg_with_fingerprints() -> None:
    clean = clean_image(jpeg(picture(1)), min_size=32)
    assert (clean.width, clean.height) == (96, 96)
    assert len(clean.sha256) == 64 and 0 <= clean.phash < 2**64
    assert _pixels(clean).shape == (96, 96, 3)


def test_the_same_pixels_in_two_formats_have_one_sha() -> None:
    image = picture(2)
    png, bmp = _save(image, "PNG"), _save(image, "BMP")
    assert png != bmp
    assert clean_image(png, 32).sha256 == clean_image(bmp, 32).sha256


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"", "", "empty"),
        (b"<html><body>404 Not Found</body></html>", "text/html; charset=utf-8",
         "not-an-image:text/html"),
        (b"GIF89a" + b"\x00" * 5, "", "not-an-image"),
        (jpeg(picture(3))[:700], "image/jpeg", "broken-image"),
        (_save(picture(3, size=(31, 200)), "PNG"), "", "too-small:31x200"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n", "", "not-an-image"),
    ],
    ids=["empty", "html", "garbage-gif", "truncated", "too-small", "eps-never-decoded"],
)
def test_unusable_bytes_are_rejected_with_a_reason(data: bytes, content_type: str,
                                                   reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        clean_image(data, min_size=32, content_type=content_type)
    assert info.value.reason.startswith(reason)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    # 10,000 x 10,000 = 1e8 pixels > Image.MAX_IMAGE_PIXELS (89.5 M): Pillow would only warn.
    data = _save(Image.new("1", (10_000, 10_000)), "PNG")
    assert len(data) < 100_000
    return data


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_even_when_pillow_only_warns(bomb: bytes) -> None:
    with pytest.raises(ImageRejected, match="decompression-bomb"):
        clean_image(bomb, min_size=32)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_warning_as_error_is_a_rejection(bomb: bytes) -> None:
    with pytest.raises(ImageRejected, match="decompression-bomb"):
        clean_image(bomb, min_size=32)


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 40))
    px = _pixels(clean_image(_save(rgba, "PNG"), 32))
    assert np.abs(px[20, 35] - [255, 255, 255]).max() <= 3  # transparent -> white, not black
    assert np.abs(px[20, 5] - [0, 0, 255]).max() <= 3

    la = Image.new("LA", (40, 40), (0, 0))
    assert np.abs(_pixels(clean_image(_save(la, "PNG"), 32)) - 255).max() <= 3

    p = Image.new("P", (40, 40), 0)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.paste(1, (0, 0, 20, 40))
    px = _pixels(clean_image(_save(p, "PNG", transparency=0), 32))
    assert np.abs(px[20, 35] - 255).max() <= 3 and np.abs(px[20, 5] - [0, 255, 0]).max() <= 3


def test_cmyk_and_16_bit_are_mapped_to_8_bit_rgb() -> None:
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # pure red in CMYK
    assert np.abs(_pixels(clean_image(_save(cmyk, "JPEG"), 32))[20, 20] - [255, 0, 0]).max() < 8
    deep = Image.fromarray(np.full((40, 40), 65535 // 2, dtype=np.uint16))
    value = _pixels(clean_image(_save(deep, "PNG"), 32))[20, 20]
    assert 120 <= value[0] <= 135 and value[0] == value[1] == value[2]  # scaled, not clipped


def test_exif_orientation_is_applied() -> None:
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    clean = clean_image(_save(wide, "JPEG", exif=exif.tobytes()), 32)
    assert (clean.width, clean.height) == (40, 80)


def test_the_servers_content_type_enters_the_reason_short_and_printable() -> None:
    with pytest.raises(ImageRejected) as info:
        clean_image(b"<html>", 32, "text/" + "x" * 10_000)
    assert len(info.value.reason) < 80
    with pytest.raises(ImageRejected) as info:
        clean_image(b"<html>", 32, "text/h\x1b[31mtml")
    assert info.value.reason == "not-an-image:?"
