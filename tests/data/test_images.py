import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descend.data.images import BadImage, load_pixels, open_image


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
