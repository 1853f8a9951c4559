"""The decoded-image cache: keyed by the files, reused, rebuilt, safe with two builders."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from descend.data.cache import TensorCache, files_key, scan_files
from descend.data.datasets import load_dataset
from descend.data.stats import split_stats, train_stats


def test_scan_lists_files_recursively_without_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "a" / "deep" / "y.png").write_bytes(b"22")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"3")
    (tmp_path / "a" / ".cache").mkdir()
    (tmp_path / "a" / ".cache" / "z.png").write_bytes(b"4")
    files = scan_files(tmp_path / "a")
    assert [f.rel for f in files] == ["deep/y.png", "x.png"]
    assert [f.size for f in files] == [2, 1]


def test_key_changes_with_content_size_time_and_settings(tmp_path: Path) -> None:
    f = tmp_path / "x.png"
    f.write_bytes(b"abc")
    k = files_key(scan_files(tmp_path), (32, 32))
    assert files_key(scan_files(tmp_path), (32, 32)) == k
    assert files_key(scan_files(tmp_path), (64, 64)) != k
    f.write_bytes(b"abcd")
    assert files_key(scan_files(tmp_path), (32, 32)) != k
    k2 = files_key(scan_files(tmp_path), (32, 32))
    st = f.stat()

    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same size, new time
    assert files_key(scan_files(tmp_path), (32, 32)) != k2


def test_cache_is_memory_mapped_and_reused(image_folder: Path, isolated_cache: Path) -> None:
    a = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    entry = next((isolated_cache / "decoded").glob("*.pt"))
    mtime = entry.stat().st_mtime_ns
    b = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    assert entry.stat().st_mtime_ns == mtime
    assert torch.equal(a.train.images, b.train.images) and a.train.paths == b.train.paths
    hit = TensorCache(isolated_cache).load(entry.stem)
    assert hit is not None and hit["images"].shape == (60, 3, 16, 16)  # train and val
    maps = Path("/proc/self/maps")
    if maps.is_file():  # Linux: the entry is mapped into memory, not read into it
        assert str(entry) in maps.read_text()


def test_a_damaged_entry_is_rebuilt(image_folder: Path, isolated_cache: Path) -> None:
    a = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    entry = next((isolated_cache / "decoded").glob("*.pt"))
    entry.write_bytes(entry.read_bytes()[:1000])
    b = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    assert torch.equal(a.train.images, b.train.images)
    assert TensorCache(isolated_cache).load(entry.stem) is not None


BUILD = """
import sys, time
from descend.data.datasets import load_dataset
t = time.time()
d = load_dataset("imagefolder:" + sys.argv[1], image_size=16, progress=False)
print(int(d.train.images.sum()), len(d.train), len(d.val))
"""


def test_two_processes_building_the_same_entry_at_once(tmp_path: Path, make_images,
                                                      isolated_cache: Path) -> None:
    """Both runs finish with the same data; one whole entry is left, no temporary files."""
    root = tmp_path / "many"
    for k, color in enumerate([(200, 30, 30), (30, 200, 30)]):
        make_images(root / f"c{k}", color, 150, size=48, seed=k)
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    env = {**os.environ, "DESCEND_CACHE": str(isolated_cache)}
    procs = [subprocess.Popen([sys.executable, str(script), str(root)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0] and outs[0][0].split()[1:] == ["240", "60"]
    files = sorted(p.name for p in (isolated_cache / "decoded").iterdir())
    assert len([f for f in files if f.endswith(".pt")]) == 1
    assert not [f for f in files if f.endswith(".tmp")]
    d = load_dataset(f"imagefolder:{root}", image_size=16, progress=False)
    assert str(int(d.train.images.sum())) == outs[0][0].split()[0]


def test_normalization_stats_are_cached_under_the_split_key(image_folder: Path,
                                                            isolated_cache: Path) -> None:
    d = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    start = time.perf_counter()
    mean, std = train_stats(d)
    assert list((isolated_cache / "stats").glob("*.json"))
    assert (mean, std) == train_stats(d)
    assert time.perf_counter() - start < 5
    from descend.data.loader import channel_stats

    exact = channel_stats(d.train.images)
    assert torch.allclose(torch.tensor(mean), torch.tensor(exact[0]))
    other = load_dataset(f"imagefolder:{image_folder}", image_size=16, seed=5, progress=False)
    assert other.train.key != d.train.key  # another split, another entry
    assert split_stats(other.train, isolated_cache) != (mean, std)


def test_a_cache_that_cannot_be_written_is_reported_not_swallowed(
        image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from descend.data.datasets import load_dataset

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    d = load_dataset(f"imagefolder:{image_folder}", cache=blocker / "cache", image_size=16,
                     progress=False)
    assert len(d.train) == 48  # the run goes on
    assert "the decode cache was not written" in caplog.text
