"""Image folders holding what a file system can hold: names that are not UTF-8, symbolic links
round a loop, out of the folder or to nothing, FIFOs, unreadable files, folders named like
images, a 3 GB ``.jpg``. Each is used or skipped and listed with a reason; none crashes, hangs
or fills the memory, and every good image beside it is still used.

Made for real (``os.mkfifo``, ``os.symlink``, a sparse file from ``os.truncate``): Linux only.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from descend.cli.main import main
from descend.data.cache import list_files
from descend.data.datasets import load_dataset
from descend.data.images import BadImage, _open, check_many, load_pixels

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="bytes file names, FIFOs and /proc are Linux's")

GOOD = 6  # images per class that every case must keep
PEAK_GROWTH = 200 << 20  # bytes of peak memory a 3 GB file may cost


@pytest.fixture
def folder(tmp_path: Path, make_images) -> Path:  # noqa: ANN001
    root = tmp_path / "data"
    make_images(root / "red", (220, 40, 40), GOOD, seed=0)
    make_images(root / "blue", (40, 60, 220), GOOD, seed=1)
    return root


def _load(root: Path, **options: object):  # noqa: ANN202
    """The folder at 16 x 16; every usable image is in ``train`` or ``val``."""
    return load_dataset(f"imagefolder:{root}", image_size=16, progress=False, val_fraction=0.5,
                        **options)


def _count(data) -> int:  # noqa: ANN001
    return len(data.train) + len(data.val)


def _skipped(data, root: Path) -> dict[str, str]:  # noqa: ANN001
    return {os.path.relpath(s["path"], root): s["reason"] for s in data.skipped}


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


@contextlib.contextmanager
def _no_hang(seconds: int = 30) -> Iterator[None]:
    """A hang in this thread (a FIFO opened for reading waits for a writer) fails the test."""
    def fail(*_: object) -> None:
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_name_that_is_not_utf8_is_used(folder: Path, isolated_cache: Path) -> None:
    good = (folder / "red" / "img_000.png").read_bytes()
    fd = os.open(os.fsencode(folder / "red") + b"/\xff\xfe.png", os.O_WRONLY | os.O_CREAT)
    os.write(fd, good)
    os.close(fd)
    data = _load(folder)
    assert _count(data) == 2 * GOOD + 1 and data.skipped == []
    entry = next((isolated_cache / "decoded").glob("*.pt"))
    built = entry.stat().st_mtime_ns
    again = _load(folder)  # the cache key hashes the name as bytes: the entry is reused
    assert entry.stat().st_mtime_ns == built and _count(again) == 2 * GOOD + 1


def test_a_symlink_loop_is_listed_once_and_not_walked(folder: Path) -> None:
    os.symlink(".", folder / "red" / "loop")  # ln -s . red/loop
    os.symlink("..", folder / "red" / "up")  # the dataset itself, inside a class
    os.symlink("self", folder / "red" / "self")  # a link to itself
    os.symlink(".", folder / "green")  # a class folder that is the dataset
    with _no_hang():
        data = _load(folder)
    assert _count(data) == 2 * GOOD and data.classes == ["blue", "red"]
    assert _skipped(data, folder) == {"red/loop": "symlink-loop", "red/up": "symlink-loop",
                                      "red/self": "symlink-loop", "green": "symlink-loop"}


def test_links_out_of_the_folder_are_followed(folder: Path, tmp_path: Path,
                                              make_images) -> None:  # noqa: ANN001
    make_images(tmp_path / "elsewhere" / "more", (200, 30, 30), 3, seed=7)
    os.symlink(tmp_path / "elsewhere" / "more", folder / "red" / "more")
    os.symlink(tmp_path / "elsewhere" / "more", folder / "red" / "again")  # the same folder
    os.symlink(tmp_path / "elsewhere" / "more" / "img_000.png", folder / "blue" / "odd.png")
    os.symlink("img_001.png", folder / "blue" / "alias.png")  # a link to a file beside it
    data = _load(folder)
    assert _count(data) == 2 * GOOD + 3 + 1 + 1
    # the second link to a folder is listed, its files are not counted twice
    assert _skipped(data, folder) == {"red/more": "linked-twice"}  # "again" sorts first
    paths = {os.path.relpath(p, folder) for p in data.train.paths + data.val.paths}
    assert {"red/again/img_000.png", "blue/odd.png", "blue/alias.png"} <= paths


def test_links_to_nothing_fifos_and_unreadable_files_are_listed(folder: Path) -> None:
    os.symlink("nowhere.png", folder / "red" / "gone.png")
    os.mkfifo(folder / "red" / "pipe.png")
    os.symlink("/dev/zero", folder / "blue" / "zero.png")
    if Path("/proc/self/mem").exists():  # opens, then fails every read at offset 0
        os.symlink("/proc/self/mem", folder / "blue" / "mem.png")
    (folder / "blue" / "x.jpg").mkdir()  # a folder named like an image: walked, holds nothing
    with _no_hang():
        data = _load(folder)
        streamed = _load(folder, memory_budget=0)  # header checks only, for streaming
    expected = {"red/gone.png": "missing", "red/pipe.png": "not-a-file",
                "blue/zero.png": "not-a-file"}
    if Path("/proc/self/mem").exists():
        expected["blue/mem.png"] = "unreadable"
    for d in (data, streamed):
        assert _count(d) == 2 * GOOD and _skipped(d, folder) == expected


def test_the_decoder_refuses_what_is_not_a_regular_file(folder: Path) -> None:
    os.mkfifo(folder / "pipe.png")
    (folder / "x.jpg").mkdir()
    with _no_hang():
        for name, reason in (("pipe.png", "not-a-file"), ("x.jpg", "not-a-file"),
                             ("none.png", "missing")):
            with pytest.raises(BadImage) as e:
                load_pixels(folder / name, (16, 16))
            assert e.value.reason == reason
            ok, _, skipped = check_many([str(folder / name)])
            assert not ok[0] and skipped[0]["reason"] == reason
    if Path("/proc/self/mem").exists():
        with pytest.raises(BadImage, match="unreadable"):
            load_pixels("/proc/self/mem", (16, 16))


def _sparse(path: Path, size: int = 3 << 30, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space beyond ``head``."""
    with path.open("wb") as f:
        f.write(head)
        os.truncate(f.fileno(), size)
    return path


def test_a_3_gb_file_is_not_read_into_memory(folder: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _sparse(folder / "red" / "huge.jpg")  # 3 GB of zeros: not an image
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 40, 210)).save(photo, "JPEG")
    _sparse(folder / "blue" / "tail.jpg", head=photo.getvalue())  # a JPEG, then 3 GB
    before = _peak()
    data = _load(folder)
    streamed = _load(folder, memory_budget=0)
    assert main(["data", "info", f"imagefolder:{folder}", "--image-size", "16"]) == 0
    assert _peak() - before < PEAK_GROWTH, f"peak memory grew {(_peak() - before) >> 20} MB"
    for d in (data, streamed):
        assert _count(d) == 2 * GOOD + 1  # the JPEG with the tail is used
        assert _skipped(d, folder) == {"red/huge.jpg": "not-an-image"}
    assert "huge.jpg: not-an-image" in capsys.readouterr().out


def test_a_reduced_jpeg_decode_still_happens_from_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(path)
    im, declared, box = _open(path, (100, 100), 1)
    assert declared == (800, 600) and im.size == (200, 150)  # decoded at 1/4
    assert np.array_equal(load_pixels(path, (16, 16)), load_pixels(path.read_bytes(), (16, 16)))


def test_the_walk_lists_each_file_once_with_its_reasons(folder: Path) -> None:
    os.symlink(".", folder / "red" / "loop")
    os.mkfifo(folder / "red" / "pipe")
    files, skipped = list_files(folder / "red")
    assert [f.rel for f in files] == [f"img_{i:03d}.png" for i in range(GOOD)]
    assert [(Path(s["path"]).name, s["reason"]) for s in skipped] == [
        ("loop", "symlink-loop"), ("pipe", "not-a-file")]
