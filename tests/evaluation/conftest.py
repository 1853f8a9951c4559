"""A tiny run trained on "photos": images of several sizes and shapes, decoded with a
``resize:24,center-crop:16`` geometry, so that predicting them the naive way (scale to just
cover 16 x 16) gives other pixels than training saw.

Its validation folder holds three mislabelled images (red photos filed as green and blue), so
that `descend eval` has confident mistakes to rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import descend

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
AUGMENT = "resize:24,center-crop:16"
# (height, width) of the photos, in turn: landscape, portrait, and one big enough that its JPEG
# is decoded at a reduced scale (`Image.draft`), as training decodes it.
SIZES = [(30, 40), (48, 36), (300, 400)]


def photo(color: tuple[int, int, int], size: tuple[int, int], rng: np.random.Generator
          ) -> Image.Image:
    """A noisy image of one colour with a left-to-right ramp: which window is cut, and at what
    scale, changes its pixels."""
    h, w = size
    ramp = np.linspace(-70, 70, w)[None, :, None]
    noise = rng.integers(-25, 25, size=(h, w, 3))
    return Image.fromarray(np.clip(np.array(color) + ramp + noise, 0, 255).astype(np.uint8))


def write_photos(folder: Path, color: tuple[int, int, int], n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        size = SIZES[i % len(SIZES)]
        suffix = ".jpg" if size == SIZES[-1] else ".png"
        photo(color, size, rng).save(folder / f"photo_{i:03d}{suffix}", quality=90)


@pytest.fixture(scope="session")
def photo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 3-epoch mlp trained on the photos (CPU, its own cache)."""
    root = tmp_path_factory.mktemp("photos")
    data = root / "data"
    for k, (name, color) in enumerate(COLORS.items()):
        write_photos(data / "train" / name, color, 12, seed=k)
        write_photos(data / "val" / name, color, 4, seed=10 + k)
    rng = np.random.default_rng(99)
    for name, n in (("green", 2), ("blue", 1)):  # mislabelled: red photos in other folders
        for i in range(n):
            photo(COLORS["red"], SIZES[i], rng).save(data / "val" / name / f"wrong_{i}.png")
    result = descend.train(data=f"imagefolder:{data}", model="mlp", epochs=3, batch_size=8,
                           image_size=16, augment=AUGMENT, progress=False, device="cpu",
                           out=str(root / "run"), cache_dir=str(root / "cache"))
    return result.run_dir


@pytest.fixture
def mode_files(tmp_path: Path) -> dict[str, Path]:
    """A photo in three modes, each saved as the file that training would read."""
    rng = np.random.default_rng(5)
    rgb = photo(COLORS["green"], (30, 40), rng)
    alpha = np.zeros((30, 40), dtype=np.uint8)
    alpha[10:20, 15:25] = 255  # opaque in the middle only: the crop's corners are transparent
    alpha[12:18, 5:10] = 128
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(alpha))
    files = {"rgb": tmp_path / "rgb.png", "rgba": tmp_path / "rgba.png",
             "grey": tmp_path / "grey.png"}
    rgb.save(files["rgb"])
    rgba.save(files["rgba"])
    rgb.convert("L").save(files["grey"])
    return files
