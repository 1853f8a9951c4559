"""Shared fixtures: small real image folders made with Pillow, and the real datasets' location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def write_class_images(folder: Path, color: tuple[int, int, int], n: int, size: int = 16,
                       seed: int = 0) -> None:
    """``n`` noisy images of one dominant colour: easy to learn, never identical."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noise = rng.integers(-40, 40, size=(size, size, 3))
        pixels = np.clip(np.array(color)[None, None] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A flat class-folder dataset: three colour classes, 20 images each, 16x16."""
    root = tmp_path / "colors"
    for k, (name, color) in enumerate(COLORS.items()):
        write_class_images(root / name, color, 20, seed=k)
    return root


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """The train/val/test layout with the same three classes."""
    root = tmp_path / "split"
    for k, (name, color) in enumerate(COLORS.items()):
        write_class_images(root / "train" / name, color, 16, seed=k)
        write_class_images(root / "val" / name, color, 4, seed=10 + k)
        write_class_images(root / "test" / name, color, 4, seed=20 + k)
    return root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir, so no test sees another's decoded images."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DESCEND_CACHE", str(cache))
    return cache


@pytest.fixture(autouse=True)
def no_proxy_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's HTTP_PROXY and friends are not the tests': crawls of the local fake web go
    direct unless a test sets a proxy itself (tests/crawl/test_proxy.py)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def real_data() -> Path:
    """The shared real datasets (``DESCEND_DATA``); skips when they are not configured."""
    root = os.environ.get("DESCEND_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("DESCEND_DATA is not set to the datasets folder (CI sets ../shared/datasets)")
    return Path(root)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the real datasets across the session: CIFAR-10 is decoded once."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def train_args():  # noqa: ANN201
    """``train_args(data_folder, out, *extra)``: argv of a tiny, fast `descend train`."""
    return _train_args


@pytest.fixture
def make_images():  # noqa: ANN201
    return write_class_images


def _train_args(data: Path | str, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", f"imagefolder:{data}", "--model", "mlp", "--epochs", "2",
            "--batch-size", "8", "--image-size", "16", "--out", str(out), "--no-progress",
            "--no-download", "--lr", "0.05", *extra]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reads the real datasets is `slow`: `make test` leaves them out and
    `make test-slow` (run by CI) runs them."""
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo-sized folder (``train/`` and ``val/``, airplane and frog, 20 and 8 a class):
    the built-in sample's 32-pixel pictures scaled to 128-pixel JPEGs, so descend measures them
    as photos. Shared by the session: nothing may write inside it."""
    from descend.data.datasets import load_dataset

    root = tmp_path_factory.mktemp("photos")
    data = load_dataset("cifar10-sample", cache=tmp_path_factory.mktemp("photo-cache"))
    for split, source, count in (("train", data.train, 20), ("val", data.test, 8)):
        for name in ("airplane", "frog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            pictures = source.images[source.labels == data.classes.index(name)][:count]
            for i, pixels in enumerate(pictures):
                image = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize(
                    (128, 128), Image.Resampling.BICUBIC)
                image.save(folder / f"{name}_{i:03d}.jpg", quality=92)
    return root
