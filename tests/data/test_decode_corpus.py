"""Every JPEG that plain Pillow decodes is accepted, and gives the pixels a plain decode gives.

A corpus of JPEGs is made here: many sizes and aspect ratios (the 417x500, 394x500 and 500x412
photos that were once refused as corrupt, the widths at which a float crop box came out at
-7e-15, tall, wide, odd, 1xN), baseline and progressive, 4:4:4 / 4:2:2 / 4:2:0, grey and CMYK,
and all 8 EXIF orientations. Each file is decoded at several training sizes by `load_pixels`
(reduced-scale JPEG draft included) and compared with a reference made without descend:
Pillow's full decode, `ImageOps.exif_transpose`, RGB, then the centre crop computed here in
exact fractions and one direct antialiased resize; `decode_many` must give the same arrays and
`check_many` must pass every header. The content (gradients, shapes, noise) is asymmetric, so
the test also checks that a mirrored, transposed, unrotated or mis-cropped reference would be
outside the tolerance: a wrong geometry cannot pass.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from descend.data.images import check_many, decode_many, load_pixels

# (side, resize): cover then centre crop at 16..224, and torchvision's Resize(256)+CenterCrop(224).
GEOMETRIES = [(16, None), (32, None), (64, None), (224, None), (224, 256)]
# Grey levels out of 255, per (file, geometry): the mean over all pixels and channels of
# |descend - reference|, and the largest single difference. Without a draft the two differ only
# by Pillow's reducing_gap (a box reduce before the resize) and float rounding of the box: 0.2
# and 3 at most, measured. With one (a JPEG at 1/2..1/8 scale, >= 4x the target, see
# DRAFT_MARGIN) by the DCT-domain downscale: 0.4 and 5. A reduced decode whose partial last
# DCT block was taken as a whole pixel (stretching the picture by up to a pixel) measured up to
# 2.7 and 22 (133 of the 1775 decodes beyond these bounds), so the bounds sit between.
MEAN_TOLERANCE = 0.75
MAX_TOLERANCE = 8
# A geometry error must be visible well beyond the tolerance; checked at these geometries.
WRONG_MEAN_AT_LEAST = 3 * MEAN_TOLERANCE
WRONG_GEOMETRIES = [(16, None), (224, 256)]
# The smallest side that the loaders accept by default (`DataRequest.min_size`); thinner
# files (1xN) are decoded with min_size 1, as `load_pixels` does by default.
MIN_SIZE = 8

# Sides (width with height 500, height with width 500, and squares) at which the old crop box,
# width / 2 - w / scale / 2, came out negative (-7e-15) for at least one of GEOMETRIES.
ROUNDING_SIDES = [49, 55, 95, 97, 98, 103, 107, 110, 111, 187, 190, 191, 193, 194, 195, 196, 197,
                  206, 207, 214, 220, 222, 237, 239, 249, 253, 374, 380, 382, 386, 387, 388,
                  390, 392, 394, 401, 405, 412, 414, 417, 425, 428, 440, 443, 444, 474, 478,
                  479, 491, 498, 499]
REPORTED = [(417, 500), (394, 500), (500, 412)]
NEIGHBOURS = [(416, 500), (418, 500), (393, 500), (395, 500), (500, 411), (500, 413)]
ODD = [(8, 8), (9, 9), (8, 300), (300, 8), (9, 301), (17, 33), (101, 77), (255, 257),
       (333, 333), (40, 600), (600, 40), (640, 427), (427, 640), (1, 64), (64, 1), (1, 300),
       (300, 1), (2, 3)]
# Big enough for a reduced-scale decode at 16, 32 or 64; sides of 8k + 1 leave a sliver of a
# DCT block at 1/8 scale; 4000x300 is too low for most drafts. Two kinds each, in turn.
LARGE = [(1025, 769), (769, 1025), (2000, 1500), (1201, 1799), (4000, 300), (1023, 1023)]
KINDS = ["baseline", "progressive", "444", "422", "grey", "cmyk"]
# Each size in the 7 EXIF orientations that rotate or mirror it.
EXIF_SIZES = [(417, 500), (500, 412), (9, 31), (577, 769)]


@dataclass(frozen=True)
class Entry:
    path: Path
    size: tuple[int, int]  # as stored
    kind: str
    orientation: int  # EXIF orientation, 1 = none

    @property
    def min_size(self) -> int:
        return MIN_SIZE if min(self.size) >= MIN_SIZE else 1


@functools.lru_cache(maxsize=2)  # the kinds of one size share a picture
def _content(width: int, height: int) -> np.ndarray:
    """An asymmetric picture: red grows to the right, green downwards, a dark disc upper left,
    a bright bar lower right, a diagonal wave in blue, and fine noise."""
    rng = np.random.default_rng([width, height])
    u = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    v = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), dtype=np.float32)
    img[..., 0] = 20 + 215 * u
    img[..., 1] = 20 + 215 * v
    wave_u, wave_v = 2 * np.pi * 1.5 * u, 2 * np.pi * v  # sin(a + b), separably
    img[..., 2] = 128 + 90 * (np.sin(wave_u) * np.cos(wave_v) + np.cos(wave_u) * np.sin(wave_v))
    img[(u - 0.3) ** 2 + (v - 0.3) ** 2 < 0.15 ** 2] = (15, 30, 60)
    img[(u > 0.6) & (u < 0.9) & (v > 0.62) & (v < 0.75)] = (250, 240, 200)
    img += 6 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _jpeg(width: int, height: int, kind: str, orientation: int) -> bytes:
    im = Image.fromarray(_content(width, height))
    options: dict[str, object] = {"quality": 90}
    if kind == "progressive":
        options["progressive"] = True
    elif kind in ("444", "422"):
        options["subsampling"] = {"444": 0, "422": 1}[kind]
    elif kind == "grey":
        im = im.convert("L")
    elif kind == "cmyk":
        im = im.convert("CMYK")
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buf = io.BytesIO()
    im.save(buf, "JPEG", **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    plan: list[tuple[tuple[int, int], str, int]] = []
    for size in REPORTED + NEIGHBOURS + ODD:
        plan += [(size, kind, 1) for kind in KINDS]
    for i, size in enumerate(LARGE):
        plan += [(size, KINDS[2 * i % 6], 1), (size, KINDS[(2 * i + 1) % 6], 1)]
    sweep = ([(s, 500) for s in ROUNDING_SIDES] + [(500, s) for s in ROUNDING_SIDES]
             + [(s, s) for s in ROUNDING_SIDES])
    plan += [(size, KINDS[i % 6], 1) for i, size in enumerate(sweep)]
    for i, size in enumerate(EXIF_SIZES):
        plan += [(size, KINDS[(i + o) % 6], o) for o in range(2, 9)]
    root = tmp_path_factory.mktemp("corpus")
    entries = []
    for i, (size, kind, orientation) in enumerate(plan):
        path = root / f"{i:03d}-{size[0]}x{size[1]}-{kind}-o{orientation}.jpg"
        path.write_bytes(_jpeg(*size, kind, orientation))
        entries.append(Entry(path, size, kind, orientation))
    return entries


def _reference(im: Image.Image, side: int, resize: int | None, zoom: Fraction = Fraction(1),
               ) -> np.ndarray:
    """Cover (or shorter side to ``resize``), centre crop ``side`` x ``side``, in exact fractions:
    the crop is the centred window of ``side / scale`` source pixels, ``zoom`` times that."""
    width, height = im.size
    if resize is None:
        scale = max(Fraction(side, width), Fraction(side, height))
    else:
        scale = Fraction(resize, min(width, height))
    crop = Fraction(side) / scale * zoom
    crop_w, crop_h = min(crop, Fraction(width)), min(crop, Fraction(height))
    box = ((width - crop_w) / 2, (height - crop_h) / 2,
           (width + crop_w) / 2, (height + crop_h) / 2)
    out = im.resize((side, side), Image.Resampling.BILINEAR, box=tuple(float(b) for b in box))
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(d.mean()), int(d.max())


@dataclass
class Decoded:
    """One file at one geometry: ``load_pixels``'s digest, its difference from the reference
    (mean, max), and the mean difference from each deliberately wrong reference."""

    entry: Entry
    digest: str
    mean: float
    most: int
    wrong: dict[str, float]


@pytest.fixture(scope="module")
def decoded(corpus: list[Entry]) -> dict[tuple[int, int | None], list[Decoded]]:
    """Every file at every geometry, with one full reference decode per file."""
    out: dict[tuple[int, int | None], list[Decoded]] = {g: [] for g in GEOMETRIES}
    for entry in corpus:
        with Image.open(entry.path) as stored:
            stored.load()
            upright = ImageOps.exif_transpose(stored).convert("RGB")
            unrotated = stored.convert("RGB")
        for side, resize in GEOMETRIES:
            px = load_pixels(entry.path, (side, side), resize=resize, min_size=entry.min_size)
            ref = _reference(upright, side, resize)
            mean, most = _diff(px, ref)
            wrong = {}
            if (side, resize) in WRONG_GEOMETRIES and min(entry.size) >= 32:
                # The centred square crop commutes with mirroring and transposing the picture.
                wrong = {"mirrored": ref[:, :, ::-1], "upside down": ref[:, ::-1, :],
                         "transposed": ref.transpose(0, 2, 1),
                         "zoomed 25%": _reference(upright, side, resize, Fraction(4, 5))}
                if entry.orientation != 1:
                    wrong["EXIF ignored"] = _reference(unrotated, side, resize)
                wrong = {name: _diff(px, im)[0] for name, im in wrong.items()}
            out[side, resize].append(Decoded(entry, hashlib.sha1(px.tobytes()).hexdigest(),
                                             mean, most, wrong))
    return out


def test_corpus_size(corpus: list[Entry]) -> None:
    kinds = {k: sum(e.kind == k for e in corpus) for k in KINDS}
    rotated = sum(e.orientation != 1 for e in corpus)
    print(f"\n{len(corpus)} JPEGs ({rotated} with an EXIF orientation), {kinds}")
    assert len(corpus) == 6 * 27 + 2 * 6 + 3 * 51 + 7 * 4 == 355
    assert all(n >= 50 for n in kinds.values())


def test_header_check_accepts_every_file(corpus: list[Entry]) -> None:
    for min_size in (1, MIN_SIZE):
        batch = [e for e in corpus if e.min_size == min_size]
        ok, sizes, skipped = check_many([str(e.path) for e in batch], min_size=min_size)
        assert skipped == [] and ok.all()
        assert [tuple(s) for s in sizes] == [e.size for e in batch]


@pytest.mark.parametrize("side, resize", GEOMETRIES)
def test_every_file_decodes_like_a_plain_decode(decoded: dict, side: int,
                                                resize: int | None) -> None:
    results = decoded[side, resize]
    worst = max(results, key=lambda r: r.mean)
    print(f"\n{side}/{resize}: worst mean {worst.mean:.2f} ({worst.entry.path.name}), "
          f"worst max {max(r.most for r in results)}")
    for r in results:
        assert r.mean <= MEAN_TOLERANCE and r.most <= MAX_TOLERANCE, (r.entry.path.name, r)


@pytest.mark.parametrize("side, resize", [(32, None), (224, 256)])
def test_decode_many_accepts_every_file_with_the_same_pixels(decoded: dict, side: int,
                                                             resize: int | None) -> None:
    for min_size in (1, MIN_SIZE):
        batch = [r for r in decoded[side, resize] if r.entry.min_size == min_size]
        pixels, ok, sizes, skipped = decode_many([str(r.entry.path) for r in batch],
                                                 (side, side), 3, resize, min_size)
        assert skipped == [] and ok.all()
        assert [tuple(s) for s in sizes] == [r.entry.size for r in batch]
        assert [hashlib.sha1(px.tobytes()).hexdigest() for px in pixels] == [
            r.digest for r in batch]


@pytest.mark.parametrize("side, resize", [(16, None), (224, 256)])
def test_grey_files_decode_to_one_channel_like_a_plain_decode(corpus: list[Entry], side: int,
                                                              resize: int | None) -> None:
    for entry in (e for e in corpus if e.kind == "grey"):
        px = load_pixels(entry.path, (side, side), 1, resize=resize, min_size=entry.min_size)
        with Image.open(entry.path) as stored:
            ref = _reference(ImageOps.exif_transpose(stored).convert("RGB"), side, resize)[:1]
        mean, most = _diff(px, ref)
        assert mean <= MEAN_TOLERANCE and most <= MAX_TOLERANCE, (entry.path.name, mean, most)


@pytest.mark.parametrize("side, resize", WRONG_GEOMETRIES)
def test_a_wrong_geometry_would_fail(decoded: dict, side: int, resize: int | None) -> None:
    """Mirrored, transposed, unrotated or zoomed references are far outside the tolerance, so
    the comparison above would catch such a mistake in `load_pixels`."""
    checked = [r for r in decoded[side, resize] if r.wrong]
    for r in checked:
        for name, mean in r.wrong.items():
            assert mean > WRONG_MEAN_AT_LEAST, (r.entry.path.name, name, mean)
    closest = min(m for r in checked for m in r.wrong.values())
    print(f"\n{side}/{resize}: {len(checked)} files, closest wrong geometry {closest:.2f}")
    assert len(checked) > 250
