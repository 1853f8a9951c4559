"""Class-folder datasets (seed 3.1): ``ROOT/<class>/*`` or ``ROOT/{train,val,test}/<class>/*``.

A folder is read in one of two ways:

- decoded: every file decoded once (in parallel), converted and resized to the training size,
  and kept in a `TensorCache` entry keyed by the files' identity, so later runs map it from disk
  in a fraction of a second;
- listed: the file list and labels only (`ImageFiles`), each header checked, for the streaming
  loader when the decoded images would not fit in memory.

A file that cannot be used is skipped and listed with its reason, whether the walk finds it
(a link to nothing or round a loop, a FIFO: `list_files`) or the decoder does; hidden files and
folders (``.DS_Store``, ``.thumbnails/``) are not data and are passed over silently.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from descend.data.cache import FileEntry, TensorCache, files_key, list_files
from descend.data.images import check_many, decode_many
from descend.data.splits import ImageFiles, ImageTensors
from descend.errors import DataError

# Where `descend audit --apply` moves the images a review dropped: never a class, never read.
DROPPED = "_dropped"

# Below this many files a thread pool in this process is as fast as forking workers: measured
# on CIFAR-10's PNG files on 2 cores, both take 0.07 s for 500 files; for 8,000, processes
# 0.40 s and threads 1.10 s.
PROCESS_MIN_FILES = 500
CHUNK_BYTES = 16 << 20  # decoded pixels per task sent back from a worker


@dataclass
class ClassFolder:
    """The files of one ``<class>/*`` folder, listed but not decoded."""

    root: Path
    classes: dict[str, list[FileEntry]]
    empty: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)  # passed over by the walk

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.classes.values())


def is_split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir())


def scan_class_folder(root: Path) -> ClassFolder:
    """Class name -> files (sorted), and the class folders that hold no file at all."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: give a folder of class sub-folders")
    classes: dict[str, list[FileEntry]] = {}
    empty: list[str] = []
    skipped: list[dict[str, str]] = []
    with os.scandir(root) as it:
        dirs = sorted(e.name for e in it
                      if not e.name.startswith(".") and e.name != DROPPED and _is_dir(e))
    real_root = os.path.realpath(root)
    for name in dirs:
        real = os.path.realpath(root / name)
        if real_root == real or real_root.startswith(real.rstrip(os.sep) + os.sep):
            skipped.append({"path": str(root / name), "reason": "symlink-loop",
                            "detail": f"a link to {real}, a folder the dataset is in: not a "
                                      "class folder"})
            continue
        files, passed_over = list_files(root / name)
        skipped += passed_over
        if files:
            classes[name] = files
        else:
            empty.append(name)
    return ClassFolder(root, classes, empty, skipped)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link round a loop (x -> x), a folder that cannot be looked at
        return False


def _pool(n_files: int, workers: int | None) -> tuple[Executor, int]:
    """Processes on Linux when there is enough work: decoding a small image is mostly Python
    (open, convert, copy), which threads cannot run in parallel. Elsewhere, threads: Pillow
    releases the GIL in its decoders, and nothing re-imports the caller's script."""
    cpus = os.cpu_count() or 1
    n = workers or cpus
    if n > 1 and n_files >= PROCESS_MIN_FILES and sys.platform.startswith("linux"):
        # fork: starts at once and, unlike spawn, does not re-import the caller's script; the
        # child gets only the forking thread and runs only Pillow and numpy, never torch.
        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork")), n
    return ThreadPoolExecutor(workers or min(8, cpus * 2)), n


def decode_files(
    paths: list[str],
    size: tuple[int, int],
    channels: int,
    resize: int | None = None,
    min_size: int = 1,
    progress: bool = True,
    desc: str = "decoding",
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Decode ``paths`` in parallel: (pixels (N, C, h, w), ok (N,), sizes (N, 2), skipped)."""
    n = len(paths)
    out = np.zeros((n, channels, *size), dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    sizes = np.zeros((n, 2), dtype=np.int32)
    skipped: list[dict[str, str]] = []
    pool, n_workers = _pool(n, workers)
    per_image = channels * size[0] * size[1]
    # Small chunks keep every worker busy to the end; none larger than CHUNK_BYTES.
    chunk = max(1, min(n // (n_workers * 8) + 1, CHUNK_BYTES // per_image, 512))
    # No bar off a terminal (a log file or a pipe would get carriage-return frames).
    bar = tqdm(total=n, desc=desc, disable=not progress or n < 2000 or not sys.stderr.isatty(),
               leave=False, unit="img")
    with pool, bar:
        futures = [(start, pool.submit(decode_many, paths[start:start + chunk], size, channels,
                                       resize, min_size))
                   for start in range(0, n, chunk)]
        for start, future in futures:
            px, good, wh, bad = future.result()
            out[start:start + len(good)] = px
            ok[start:start + len(good)] = good
            sizes[start:start + len(good)] = wh
            skipped += bad
            bar.update(len(good))
    skipped.sort(key=lambda s: s["path"])
    return out, ok, sizes, skipped


def check_files(paths: list[str], min_size: int = 1,
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """Header checks of ``paths`` in parallel threads: (ok (N,), sizes (N, 2), skipped)."""
    chunk = 256
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        parts = list(pool.map(lambda s: check_many(paths[s:s + chunk], min_size),
                              range(0, len(paths), chunk)))
    if not parts:
        return np.zeros(0, bool), np.zeros((0, 2), np.int32), []
    skipped = sorted((s for p in parts for s in p[2]), key=lambda s: s["path"])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), skipped


def _cached(cache: TensorCache | None, key: str,
            build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The cache entry ``key``, built (once, under the lock) when it is missing."""
    if cache is None:
        return build()
    if (hit := cache.load(key)) is not None:
        return hit
    with cache.building(key):
        if (hit := cache.load(key)) is not None:  # another run built it while we waited
            return hit
        value = build()
        cache.save(key, value)
        return value


def _class_names(folder: ClassFolder, classes: list[str] | None) -> list[str]:
    """The folder's classes in label order: sorted, or training's (which must include them)."""
    if classes is None:
        return sorted(folder.classes)
    unknown = sorted(set(folder.classes) - set(classes))
    if unknown:
        raise DataError(
            f"{folder.root} has class folders that training does not have: "
            f"{', '.join(unknown)}; every split needs the same class names"
        )
    return classes


def _checked_files(paths: list[str], labels: torch.Tensor, key: str, cache: TensorCache | None,
                   channels: int, size: tuple[int, int], resize: int | None, min_size: int
                   ) -> tuple[ImageFiles, list[dict[str, str]]]:
    """The usable files, checked (header and size) but not decoded, for streaming."""
    def check() -> dict[str, Any]:
        ok, sizes, skipped = check_files(paths, min_size)
        return {"ok": torch.from_numpy(ok), "sizes": torch.from_numpy(sizes), "skipped": skipped}

    entry = _cached(cache, f"check-{key}", check)
    keep = torch.nonzero(entry["ok"]).flatten()
    files = ImageFiles([paths[i] for i in keep.tolist()], labels[keep], channels, size, resize,
                       min_size, key, entry["sizes"][keep])
    return files, list(entry["skipped"])


def load_class_folder(
    folder: ClassFolder,
    size: tuple[int, int],
    cache: TensorCache | None,
    classes: list[str] | None = None,
    *,
    resize: int | None = None,
    min_size: int = 1,
    channels: int = 3,
    lazy: bool = False,
    progress: bool = True,
) -> tuple[ImageTensors | ImageFiles, list[str], list[dict[str, str]], list[str]]:
    """Read one ``<class>/*`` folder: (split, class names, skipped files, empty classes).

    With ``classes`` given (a val or test folder), its class folders must be among them.
    ``lazy``: list and check the files, do not decode them.
    """
    root = folder.root
    names = _class_names(folder, classes)
    entries = [f for c in names for f in folder.classes.get(c, [])]
    paths = [f.path for f in entries]
    labels = torch.tensor([i for i, c in enumerate(names) for _ in folder.classes.get(c, [])],
                          dtype=torch.int64)
    key = files_key(entries, names, size, channels, resize, min_size)

    walked = list(folder.skipped)
    if lazy:
        files, skipped = _checked_files(paths, labels, key, cache, channels, size, resize,
                                        min_size)
        return files, names, walked + skipped, folder.empty

    def decode() -> dict[str, Any]:
        px, ok, sizes, skipped = decode_files(paths, size, channels, resize, min_size, progress,
                                              f"decoding {root}")
        return {"images": torch.from_numpy(px), "ok": torch.from_numpy(ok),
                "sizes": torch.from_numpy(sizes), "skipped": skipped}

    entry = _cached(cache, key, decode)
    ok = entry["ok"]
    if bool(ok.all()):  # the usual case: keep the memory-mapped tensor, copy nothing
        split: ImageTensors = ImageTensors(entry["images"], labels, paths, key, entry["sizes"])
    else:
        keep = torch.nonzero(ok).flatten()
        split = ImageTensors(entry["images"][keep], labels[keep],
                             [paths[i] for i in keep.tolist()], key, entry["sizes"][keep])
    return split, names, walked + list(entry["skipped"]), folder.empty
