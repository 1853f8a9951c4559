import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from descend.data.images import BadImage, _transpose_box, fit, load_pixels, open_image


def _save(im: Image.Image, path: Path, **kw: object) -> Path:
    im.save(path, **kw)
    return path


def test_transparent_pixels_become_white_not_black(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    px = load_pixels(_save(rgba, tmp_path / "a.png"), None)
    assert px.shape == (3, 8, 8) and px.min() == 255
    la = Image.new("LA", (8, 8), (0, 0))
    assert load_pixels(_save(la, tmp_path / "la.png"), None).min() == 255


def test_palette_with_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    px = load_pixels(_save(p, tmp_path / "p.png", transparency=0), None)
    assert tuple(px[:, 0, 0]) == (10, 200, 30) and tuple(px[:, 5, 5]) == (255, 255, 255)


def test_cmyk_and_16_bit_grey(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    px = load_pixels(_save(cmyk, tmp_path / "c.jpg", quality=95), None)
    assert px[0].mean() > 200 and px[1].mean() < 60
    grey16 = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    px = load_pixels(_save(grey16, tmp_path / "g16.png"), None, channels=1)
    assert px.shape == (1, 8, 8) and 120 <= px.mean() <= 135


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif.tobytes())
    assert open_image(path).size == (10, 20)


def test_resize_keeps_aspect_by_centre_crop(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 20))  # a red band at the far left is cropped away
    px = load_pixels(_save(im, tmp_path / "w.png"), (16, 16))
    assert px.shape == (3, 16, 16) and px[0].max() < 50


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"), (b"<html><body>404</body></html>", "not-an-image"),
])
def test_unusable_bytes(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    with pytest.raises(BadImage) as e:
        open_image(path)
    assert e.value.reason == reason


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.getvalue()[:300])
    with pytest.raises(BadImage) as e:
        open_image(path)
    assert e.value.reason == "corrupt"


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(Image.new("L", (300, 300)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 4)  # 4x over: a bomb error
    with pytest.raises(BadImage) as e:
        open_image(path)
    assert e.value.reason == "too-large"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 1.5)  # only a warning in Pillow
    with pytest.raises(BadImage):
        open_image(path)


def test_header_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path: Path,
                                                                   huge_png_header) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png_header(100_000, 100_000))
    assert path.stat().st_size < 100
    with pytest.raises(BadImage) as e:
        load_pixels(path, (16, 16))
    assert e.value.reason == "too-large"


def test_min_size_refuses_tiny_images_and_predict_style_calls_keep_them(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (1, 1), (200, 10, 10)), tmp_path / "dot.png")
    with pytest.raises(BadImage) as e:
        load_pixels(path, (16, 16), min_size=8)
    assert e.value.reason == "too-small"
    px = load_pixels(path, (16, 16))  # min_size 1: upscaled, one flat colour
    assert px.shape == (3, 16, 16) and tuple(px[:, 8, 8]) == (200, 10, 10)


def test_jpeg_draft_decodes_big_photos_at_reduced_scale_with_the_same_result(
        tmp_path: Path) -> None:
    """A 2000x1500 JPEG fitted to 64x64 via a 1/8-scale draft matches the full decode."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((2000, 1500), Image.Resampling.BICUBIC)
    path = _save(big, tmp_path / "photo.jpg", quality=92)
    fast = load_pixels(path, (64, 64)).astype(float)
    from descend.data.images import fit

    with Image.open(path) as im:
        full = np.asarray(fit(im.convert("RGB"), (64, 64))).transpose(2, 0, 1).astype(float)
    assert fast.shape == full.shape == (3, 64, 64)
    assert np.abs(fast - full).mean() < 1.0  # grey levels out of 255
    with Image.open(path) as im:
        im.draft(None, (256, 256))
        assert im.size[0] < 2000  # the draft really reduced the decode


def test_resize_then_centre_crop(tmp_path: Path) -> None:
    """resize 40 then crop 32 of an 80x80 image: its centre 64x64, scaled by 1/2."""
    arr = np.zeros((80, 80, 3), dtype=np.uint8)
    arr[4:76, 4:76] = 255  # white beyond the crop (8..72) by the filter's reach (2 pixels)
    path = _save(Image.fromarray(arr), tmp_path / "sq.png")
    px = load_pixels(path, (32, 32), resize=40)
    assert px.min() == 255
    plain = load_pixels(path, (32, 32))  # fit: the whole image, black border included
    assert plain.min() == 0


def test_16_bit_dark_image_stays_dark(tmp_path: Path) -> None:
    dark = Image.fromarray(np.full((8, 8), 200, dtype=np.uint16))  # 200 of 65535
    px = load_pixels(_save(dark, tmp_path / "dark16.png"), None, channels=1)
    assert px.max() <= 1


@pytest.mark.parametrize("width, height", [(417, 500), (394, 500), (500, 412), (49, 49)])
def test_sizes_whose_float_crop_box_fell_below_zero_are_accepted(width: int, height: int) -> None:
    """The centred box came out at -7e-15 and Pillow refused it ("box offset can't be
    negative"), so ordinary photos were skipped as corrupt."""
    buf = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(buf, "JPEG")
    for side, resize in [(16, None), (32, None), (64, None), (224, None), (224, 256)]:
        px = load_pixels(buf.getvalue(), (side, side), resize=resize, min_size=8)
        assert px.shape == (3, side, side)


@pytest.mark.parametrize("orientation", [1, 2, 6, 7, 8])
def test_reduced_decode_keeps_the_picture_in_place_when_its_last_block_is_partial(
        orientation: int) -> None:
    """769x513 at 1/8 decodes to 97x65 pixels, but the picture is 96.125x64.125 of them."""
    arr = np.zeros((513, 769), dtype=np.uint8)
    arr[:, 384:] = 255  # white right half, before EXIF orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(buf) as im:
        plain = ImageOps.exif_transpose(im).convert("L")
    (width, height), crop = plain.size, min(plain.size)  # the centred square, to 16x16
    box = ((width - crop) / 2, (height - crop) / 2, (width + crop) / 2, (height + crop) / 2)
    reference = np.asarray(plain.resize((16, 16), Image.Resampling.BILINEAR, box=box))
    px = load_pixels(buf.getvalue(), (16, 16), 1)[0]
    with Image.open(buf) as im:
        assert im.draft(None, (64, 64))[1] == (0, 0, 96.125, 64.125)  # reduced to 1/8
    assert np.abs(px.astype(int) - reference).mean() < 0.5  # 97 pixels taken as picture: 1.75


def test_transpose_box_follows_pillow() -> None:
    im = Image.new("L", (7, 5))
    im.paste(255, (1, 0, 4, 2))
    for method in Image.Transpose:
        assert _transpose_box((1, 0, 4, 2), im.size, method) == im.transpose(method).getbbox()


def test_resize_smaller_than_the_crop_is_refused() -> None:
    with pytest.raises(ValueError, match="resize 200 is smaller than the crop 224x224"):
        fit(Image.new("RGB", (300, 300)), (224, 224), resize=200)


def _old_deep_conversion(im: Image.Image) -> np.ndarray:
    """descend 0.2's whole-picture conversion of 16-bit, 32-bit and float grey: the reference
    the strip conversion must match pixel for pixel."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0).astype(np.uint8)
    hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
    return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "I small", "F"])
def test_deep_modes_converted_in_strips_match_the_whole_picture_conversion(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from descend.data import images

    rng = np.random.default_rng(0)
    if mode.startswith("I;16"):
        im = Image.fromarray(rng.integers(0, 65536, (301, 203), dtype=np.uint16))
        if mode == "I;16B":
            im = Image.frombytes("I;16B", im.size, im.tobytes("raw", "I;16B"))
    elif mode == "F":
        im = Image.fromarray(rng.normal(3.0, 40.0, (301, 203)).astype(np.float32), "F")
    else:  # 32-bit: past 255 scaled from 16 bits, at most 255 taken as it is
        top = 255 if mode == "I small" else 70_000
        im = Image.fromarray(rng.integers(-5, top, (301, 203)).astype(np.int32), "I")
    monkeypatch.setattr(images, "STRIP_PIXELS", 1000)  # many strips, one of them partial
    grey = images._to_rgb_or_grey(im)
    assert grey.mode == "L" and grey.size == im.size
    assert np.array_equal(np.asarray(grey), _old_deep_conversion(im))
    rgb = load_pixels(im, None)
    assert rgb.shape == (3, 301, 203) and np.array_equal(rgb[0], rgb[2])


def test_a_16_bit_conversion_holds_one_8_bit_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 8-bit result and a strip of float64s, never the picture in float64 (8 bytes a pixel,
    twice, in descend 0.2)."""
    import tracemalloc

    from descend.data import images

    im = Image.fromarray(np.full((1000, 2000), 40_000, dtype=np.uint16))
    monkeypatch.setattr(images, "STRIP_PIXELS", 2**14)
    tracemalloc.start()
    try:
        grey = images._to_rgb_or_grey(im)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.asarray(grey)[0, 0] == round(40_000 / 65535 * 255)
    assert peak < 1.5 * 1000 * 2000  # the 2 MB result; the old conversion peaked at 32 MB


def test_a_grey_picture_is_resized_before_it_becomes_rgb(tmp_path: Path) -> None:
    """The same pixels as expanding to RGB first, without an RGB copy at full size."""
    rng = np.random.default_rng(1)
    grey = Image.fromarray(rng.integers(0, 256, (500, 700), dtype=np.uint8))
    path = _save(grey, tmp_path / "grey.png")
    expected = np.asarray(fit(grey.convert("RGB"), (32, 32))).transpose(2, 0, 1)
    assert np.array_equal(load_pixels(path, (32, 32)), expected)
    assert np.array_equal(load_pixels(path, (32, 32), channels=1)[0], expected[0])


def test_max_pixels_refuses_from_the_header_below_pillows_limit(tmp_path: Path,
                                                              huge_png_header) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(huge_png_header(5000, 5000))  # 25 MP, under Pillow's 89 MP: let through
    with pytest.raises(BadImage) as e:
        load_pixels(path, (16, 16), max_pixels=1_000_000)
    assert e.value.reason == "too-large" and "over the limit of 1000000" in e.value.detail
    small = _save(Image.new("RGB", (100, 100)), tmp_path / "small.png")
    assert load_pixels(small, (16, 16), max_pixels=10_000).shape == (3, 16, 16)
    with pytest.raises(BadImage):
        load_pixels(small, (16, 16), max_pixels=9_999)
