"""The bad-file zoo (SPEC §3): every odd or broken file is converted correctly or skipped with
its reason, through `load_dataset` and through `descend data info`."""

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from descend.cli import data as data_cli
from descend.data.datasets import load_dataset
from descend.data.loader import LoaderOptions, make_loader
from descend.data.splits import ImageFiles
from descend.errors import DataError

RED = (220, 30, 30)

# file name -> the reason it is skipped, for the files that must be skipped
SKIPPED = {
    "zero-bytes.jpg": "empty",
    "truncated.jpg": "corrupt",
    "truncated.png": "corrupt",
    "text.jpg": "not-an-image",
    "error-page.jpg": "not-an-image",
    "one-pixel.png": "too-small",
    "bomb.png": "too-large",
}
# file name -> the RGB value of its centre pixel after decoding, for the files that are kept
KEPT = {
    "cmyk.jpg": RED,
    "grey16.png": (128, 128, 128),
    "palette-transparent.png": (255, 255, 255),  # the transparent index composites to white
    "la.png": (255, 255, 255),
    "rgba.png": (255, 255, 255),
    "animated.gif": RED,  # the first frame
    "exif-rotated.jpg": None,  # checked on its own below
}


def _png(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def make_zoo(root: Path, huge_png_header) -> Path:  # noqa: ANN001
    """A flat class folder: ``good`` (plain images) and ``zoo`` (the odd and broken files),
    ``empty`` (no file) and hidden files that are no data at all."""
    rng = np.random.default_rng(0)
    for cls, base in (("good", (40, 200, 60)), ("zoo", RED)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            px = np.clip(np.array(base) + rng.integers(-20, 20, (24, 24, 3)), 0, 255)
            Image.fromarray(px.astype(np.uint8)).save(root / cls / f"plain_{i}.png")
    (root / "empty").mkdir()
    z = root / "zoo"
    noise = Image.effect_noise((64, 64), 60).convert("RGB")
    (z / "zero-bytes.jpg").write_bytes(b"")
    (z / "truncated.jpg").write_bytes(_jpeg(noise)[:400])
    (z / "truncated.png").write_bytes(_png(noise)[:600])
    (z / "text.jpg").write_text("this is not a picture\n")
    (z / "error-page.jpg").write_text("<!DOCTYPE html><html><body><h1>404 Not Found</h1>"
                                      "</body></html>")
    (z / "one-pixel.png").write_bytes(_png(Image.new("RGB", (1, 1), RED)))
    (z / "bomb.png").write_bytes(huge_png_header(60_000, 60_000))
    (z / "cmyk.jpg").write_bytes(_jpeg(Image.new("CMYK", (24, 24), (0, 220, 220, 35))))
    grey16 = Image.fromarray(np.full((24, 24), 32896, dtype=np.uint16))  # 0.502 of 65535
    (z / "grey16.png").write_bytes(_png(grey16))
    pal = Image.new("P", (24, 24), 0)
    pal.putpalette([0, 0, 0] + list(RED) + [0] * 762)
    pal.paste(1, (0, 0, 4, 4))
    (z / "palette-transparent.png").write_bytes(_png(pal, transparency=0))
    (z / "la.png").write_bytes(_png(Image.new("LA", (24, 24), (0, 0))))
    (z / "rgba.png").write_bytes(_png(Image.new("RGBA", (24, 24), (255, 0, 0, 0))))
    frames = [Image.new("RGB", (24, 24), RED), Image.new("RGB", (24, 24), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (z / "animated.gif").write_bytes(buf.getvalue())
    # Stored: left half red, right half blue; EXIF 6 = display rotated 90 degrees clockwise,
    # so the picture shows red on top and blue below.
    arr = np.zeros((24, 24, 3), dtype=np.uint8)
    arr[:, :12] = RED
    arr[:, 12:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    (z / "exif-rotated.jpg").write_bytes(_jpeg(Image.fromarray(arr), exif=exif.tobytes()))
    (z / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (z / ".thumbnails").mkdir()
    (z / ".thumbnails" / "plain_0.png").write_bytes(b"broken thumbnail")
    return root


@pytest.fixture
def zoo(tmp_path: Path, huge_png_header) -> Path:  # noqa: ANN001
    return make_zoo(tmp_path / "zoo-data", huge_png_header)


def _all_pixels(d) -> dict[str, np.ndarray]:  # noqa: ANN001
    out = {}
    for split in (d.train, d.val):
        for path, img in zip(split.paths, split.images):
            out[Path(path).name if "zoo" in Path(path).parent.name else path] = img.numpy()
    return out


def test_every_file_of_the_zoo_gets_its_outcome(zoo: Path) -> None:
    d = load_dataset(f"imagefolder:{zoo}", image_size=16, val_fraction=0.1, progress=False)
    reasons = {Path(s["path"]).name: s["reason"] for s in d.skipped}
    assert reasons == SKIPPED
    assert d.classes == ["good", "zoo"]
    assert any("empty" in n for n in d.notes)
    kept = _all_pixels(d)
    for name, rgb in KEPT.items():
        assert name in kept, f"{name} should be kept"
        if rgb is not None:
            got = tuple(int(v) for v in kept[name][:, 8, 8])
            assert all(abs(a - b) <= 12 for a, b in zip(got, rgb)), (name, got, rgb)
    rotated = kept["exif-rotated.jpg"]
    assert rotated[0, 2, 8] > 150 and rotated[2, 2, 8] < 80  # red on top: EXIF applied
    assert rotated[2, 13, 8] > 150 and rotated[0, 13, 8] < 80  # blue below
    assert not any(".DS_Store" in p or ".thumbnails" in p for p in d.train.paths + d.val.paths)
    assert len(d.train) + len(d.val) == 12 + len(KEPT)


def test_the_zoo_streamed_gets_the_same_outcomes(zoo: Path) -> None:
    """Streaming lists files after a header check, which catches all but what is broken
    further in (the truncated PNG): that one is dropped and reported when the loader decodes
    it, or stops a strict run. Together, the same outcomes as decoding up front."""
    d = load_dataset(f"imagefolder:{zoo}", image_size=16, val_fraction=0.1, progress=False,
                     memory_budget=0)
    assert isinstance(d.train, ImageFiles)
    early = {Path(s["path"]).name: s["reason"] for s in d.skipped}
    assert "truncated.png" not in early and early.items() <= SKIPPED.items()
    both = ImageFiles(d.train.paths + d.val.paths, torch.cat([d.train.labels, d.val.labels]),
                      3, (16, 16), min_size=8)
    found: list[dict[str, str]] = []
    loader = make_loader(both, LoaderOptions(4, [0.5] * 3, [0.25] * 3, workers=0,
                                             on_skip=found.append))
    n = sum(len(y) for _, y in loader)
    late = {Path(s["path"]).name: s["reason"] for s in found}
    assert {**early, **late} == SKIPPED
    assert n == len(both) - len(late) == 12 + len(KEPT)
    strict = make_loader(both, LoaderOptions(64, [0.5] * 3, [0.25] * 3, workers=0, strict=True))
    with pytest.raises(DataError, match="--strict.*truncated"):
        list(strict)


def test_strict_names_every_bad_file(zoo: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(f"imagefolder:{zoo}", image_size=16, strict=True, progress=False)
    for name in SKIPPED:
        assert name in str(e.value)


def test_data_info_reports_the_zoo(zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "info", f"imagefolder:{zoo}", "--image-size", "16",
                              "--json", "--no-progress"])
    assert data_cli.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    problems = report["problems"]
    assert {Path(s["path"]).name: s["reason"] for s in problems["skipped"]} == SKIPPED
    assert problems["skipped_by_reason"]["corrupt"] == 2
    assert any("empty" in n for n in problems["notes"])
    assert report["source_sizes"]["width"][0] == 24  # the smallest kept file
    args = parser.parse_args(["data", "info", f"imagefolder:{zoo}", "--image-size", "16",
                              "--no-progress"])
    assert data_cli.run(args) == 0
    text = capsys.readouterr().out
    assert "skipped 7 unusable file(s)" in text and "bomb.png: too-large" in text
    assert "empty class folder skipped" in text
