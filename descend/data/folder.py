"""Class-folder datasets (seed 3.1): ``ROOT/<class>/*`` or ``ROOT/{train,val,test}/<class>/*``.

Files are decoded in parallel threads (Pillow releases the GIL while decoding), converted and
resized once to the training size, and kept in a `TensorCache`. A file that cannot be used is
skipped and listed with its reason; ``strict`` turns any skip into an error naming the files.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from descend.data.cache import TensorCache, files_key
from descend.data.images import BadImage, load_pixels
from descend.data.splits import ImageTensors
from descend.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


def is_split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir())


def list_classes(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Map class name -> files (sorted), and the class folders that hold no file at all."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: give a folder of class sub-folders")
    classes: dict[str, list[Path]] = {}
    empty: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f for f in d.rglob("*") if f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(d).parts
            )
        )
        if files:
            classes[d.name] = files
        else:
            empty.append(d.name)
    return classes, empty


def decode_files(
    files: list[Path],
    base: Path,
    size: tuple[int, int],
    channels: int,
    cache: TensorCache | None,
    progress: bool = True,
    desc: str = "decoding",
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, str]]]:
    """Decode ``files`` to uint8 (N, C, H, W); returns (images, ok mask, skipped files)."""
    key = files_key(files, base, size, channels)
    if cache is not None and (hit := cache.load(key)) is not None:
        return hit["images"], hit["ok"], list(hit["skipped"])
    out = np.zeros((len(files), channels, *size), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    skipped: list[dict[str, str]] = []

    def one(i: int) -> None:
        try:
            out[i] = load_pixels(files[i], size, channels)
            ok[i] = True
        except BadImage as e:
            skipped.append({"path": str(files[i]), "reason": e.reason, "detail": e.detail})

    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(one, range(len(files))), total=len(files), desc=desc,
                  disable=not progress or len(files) < 2000, leave=False, unit="img"))
    skipped.sort(key=lambda s: s["path"])
    images, mask = torch.from_numpy(out), torch.from_numpy(ok)
    if cache is not None:
        cache.save(key, {"images": images, "ok": mask, "skipped": skipped})
    return images, mask, skipped


def load_class_folder(
    root: Path,
    size: tuple[int, int],
    cache: TensorCache | None,
    classes: list[str] | None = None,
    progress: bool = True,
) -> tuple[ImageTensors, list[str], list[dict[str, str]], list[str]]:
    """Read one ``<class>/*`` folder; returns (tensors, class names, skipped, empty classes).

    With ``classes`` given (a val or test folder), its class folders must be among them.
    """
    found, empty = list_classes(root)
    if classes is None:
        names = sorted(found)
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(
                f"{root} has class folders that training does not have: {', '.join(unknown)}; "
                "every split needs the same class names"
            )
        names = classes
    files = [f for c in names for f in found.get(c, [])]
    labels = [i for i, c in enumerate(names) for _ in found.get(c, [])]
    images, ok, skipped = decode_files(files, root, size, 3, cache, progress, f"decoding {root}")
    keep = torch.nonzero(ok).flatten()
    tensors = ImageTensors(
        images[keep], torch.tensor(labels, dtype=torch.int64)[keep],
        [str(files[i]) for i in keep.tolist()],
    )
    return tensors, names, skipped, empty
