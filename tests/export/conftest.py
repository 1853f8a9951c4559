"""A tiny trained run and 100 image files to check its exports on.

The run (the seed's mlp, which learns these in one epoch) is trained on "photos" of three
colours in several sizes and shapes, decoded with a ``resize:24,center-crop:16`` geometry, so an
export whose metadata got the decoding wrong would be fed other pixels than training saw. The
100 test images are 50 CIFAR-10 test images of the package's sample and 50 photos (PNG, JPEG,
grey, transparent), all as files.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import descend
from descend.data.datasets import SAMPLE_FILE
from descend.models import ModelSpec, create_model
from descend.runtime.checkpoint import save_checkpoint

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
AUGMENT = "resize:24,center-crop:16"
SIZES = [(30, 40), (48, 36), (300, 400)]  # (h, w): landscape, portrait, a JPEG decoded reduced
FIXTURE_RUN = Path(__file__).parent.parent / "fixtures" / "run-0.1.0"


def photo(color: tuple[int, int, int], size: tuple[int, int], rng: np.random.Generator
          ) -> Image.Image:
    """One colour with a left-to-right ramp and noise: the window cut changes its pixels."""
    h, w = size
    ramp = np.linspace(-70, 70, w)[None, :, None]
    noise = rng.integers(-25, 25, size=(h, w, 3))
    return Image.fromarray(np.clip(np.array(color) + ramp + noise, 0, 255).astype(np.uint8))


def write_photos(folder: Path, color: tuple[int, int, int], n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        size = SIZES[i % len(SIZES)]
        path = folder / f"photo_{i:03d}{'.jpg' if size == SIZES[-1] else '.png'}"
        photo(color, size, rng).save(path, quality=90)
        files.append(path)
    return files


def cifar_sample_test(n: int) -> list[Image.Image]:
    """The first ``n`` test images of descend's CIFAR-10 sample (a mosaic of 32x32 tiles)."""
    with np.load(SAMPLE_FILE) as z:
        mosaic = np.asarray(Image.open(io.BytesIO(z["test_png"].tobytes())).convert("RGB"))
    return [Image.fromarray(mosaic[32 * i:32 * (i + 1)]) for i in range(n)]


@pytest.fixture(scope="session")
def photo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-epoch mlp trained on the photos (CPU, its own cache); every
    registered model is exported in test_models.py."""
    root = tmp_path_factory.mktemp("export-photos")
    data = root / "data"
    for k, (name, color) in enumerate(COLORS.items()):
        write_photos(data / "train" / name, color, 12, seed=k)
        write_photos(data / "val" / name, color, 3, seed=10 + k)
    result = descend.train(data=f"imagefolder:{data}", model="mlp", epochs=2, batch_size=8,
                           lr=0.05, schedule="constant", image_size=16, augment=AUGMENT,
                           progress=False, device="cpu", out=str(root / "run"),
                           cache_dir=str(root / "cache"))
    return result.run_dir


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """100 image files: 50 CIFAR-10 test images, 45 colour photos, 3 grey and 2 transparent."""
    root = tmp_path_factory.mktemp("export-images")
    files = []
    for i, im in enumerate(cifar_sample_test(50)):
        files.append(root / f"cifar_{i:03d}.png")
        im.save(files[-1])
    for k, (name, color) in enumerate(COLORS.items()):
        files += write_photos(root / name, color, 15, seed=20 + k)
    rng = np.random.default_rng(7)
    for i in range(3):
        files.append(root / f"grey_{i}.png")
        photo(COLORS["green"], SIZES[i], rng).convert("L").save(files[-1])
    for i in range(2):
        rgba = photo(COLORS["red"], SIZES[i], rng)
        alpha = np.full(SIZES[i], 255, dtype=np.uint8)
        alpha[: SIZES[i][0] // 3] = 0  # a transparent top third: composited on white
        rgba.putalpha(Image.fromarray(alpha))
        files.append(root / f"transparent_{i}.png")
        rgba.save(files[-1])
    assert len(files) == 100
    return files


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the committed descend 0.1.0 run (exports are written beside it)."""
    run = tmp_path / "run-0.1.0"
    shutil.copytree(FIXTURE_RUN, run)
    return run


@pytest.fixture
def random_checkpoint():  # noqa: ANN201
    """``random_checkpoint(path, spec)``: `write_random_checkpoint`."""
    return write_random_checkpoint


def write_random_checkpoint(path: Path, spec: ModelSpec, seed: int = 0) -> Path:
    """A descend checkpoint of ``spec`` with random weights, as `descend train` lays it out."""
    torch.manual_seed(seed)
    model = create_model(spec).eval()
    c = spec.in_channels
    save_checkpoint(path, {
        "model": spec.to_dict(), "state_dict": model.state_dict(),
        "classes": [f"class{i}" for i in range(spec.num_classes)],
        "normalization": {"mean": [0.45] * c, "std": [0.25] * c},
        "config": {"model": spec.name, "model_args": spec.kwargs}, "data": "cifar10-sample",
    })
    return path
