"""Datasets by name (SPEC §3): ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar10-sample`` and
``imagefolder:PATH``. Each registers a `Dataset`: a loader that returns `DataSplits` of decoded
uint8 tensors, and whether its images may be mirrored.

Validation: public datasets validate on their official test split unless ``val_fraction`` is
given (then a stratified part of train is held out and test stays for ``descend eval``); a flat
image folder holds out ``val_fraction`` (default 0.2) of each class.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from descend.data.cache import TensorCache, paths_key
from descend.data.folder import (
    ClassFolder,
    is_split_layout,
    load_class_folder,
    scan_class_folder,
)
from descend.data.memory import memory_budget
from descend.data.options import DataOptions
from descend.data.paths import cache_dir, data_root
from descend.data.splits import DataSplits, ImageTensors, Split, stratified_split
from descend.errors import DataError
from descend.registry import Registry, name_list

SAMPLE_FILE = Path(__file__).parent / "sample" / "cifar10-sample.npz"


@dataclass(frozen=True)
class DataRequest:
    """A dataset by name, where it lives and caches, and how to read it."""

    name: str
    root: Path
    cache: Path
    options: DataOptions = DataOptions()

    @property
    def argument(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else ""

    def geometry(self, default: int) -> tuple[tuple[int, int], int | None]:
        """((h, w) images are decoded at, shorter side before the centre crop or None)."""
        return self.options.geometry.decoded(default)


Loader = Callable[[DataRequest], DataSplits]


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its loader, how ``--data`` names it (``imagefolder:PATH``), and
    whether its images may be mirrored left-right (a mirrored digit is another shape; a mirrored
    cat is still a cat)."""

    load: Loader
    usage: str
    mirrorable: bool = True


DATASETS: Registry[Dataset] = Registry("dataset")


def register(name: str, *, argument: str = "",
             mirrorable: bool = True) -> Callable[[Loader], Loader]:
    """Function decorator: a dataset under ``name`` (``name:ARGUMENT`` when it takes one)."""
    def add(load: Loader) -> Loader:
        DATASETS.register(name)(Dataset(load, f"{name}:{argument}" if argument else name,
                                        mirrorable))
        return load

    return add


def may_mirror(name: str) -> bool:
    """Whether dataset ``name``'s images (``imagefolder:PATH``'s too) may be mirrored
    left-right; True for a name no dataset has."""
    kind = name.split(":", 1)[0]
    return kind not in DATASETS or DATASETS.get(kind).mirrorable


def datasets_help() -> str:
    """``--data``'s list: every dataset, in the order they registered."""
    return name_list([DATASETS.get(name).usage for name in DATASETS])


def mirroring_help() -> str:
    """Which datasets the augmentation does not mirror, for ``--augment``'s help."""
    kept = [DATASETS.get(name).usage for name in DATASETS if not DATASETS.get(name).mirrorable]
    return f"no mirroring for {name_list(kept, 'and')}" if kept else "every dataset mirrored"


def load_dataset(
    name: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    options: DataOptions | None = None,
    **changes: Any,
) -> DataSplits:
    """Load a dataset by name, e.g. ``load_dataset("imagefolder:data/pets", image_size=64)``.

    ``options`` (`DataOptions`, a run's come from `TrainConfig.data_options`), with
    ``changes`` by field name (`DataOptions.changed`). An image folder whose decoded images
    would not fit the memory budget comes back as `ImageFiles` splits, for the streaming loader.
    """
    kind = name.split(":", 1)[0]
    request = DataRequest(name, data_root(root), cache_dir(cache),
                          (options or DataOptions()).changed(**changes))
    data = DATASETS.get(kind).load(request)
    data.cache = request.cache
    _check_usable(data, request)
    return data


def _check_usable(data: DataSplits, request: DataRequest) -> None:
    if request.options.strict and data.skipped:
        listing = "\n  ".join(f"{s['path']}: {s['reason']}" for s in data.skipped[:50])
        raise DataError(
            f"--strict: {len(data.skipped)} file(s) of {data.name} cannot be used:\n  {listing}\n"
            "fix or remove them, or run without --strict to skip them"
        )
    if len(data.classes) < 2:
        raise DataError(
            f"{data.name} has {len(data.classes)} class(es) with usable images "
            f"({', '.join(data.classes) or 'none'}); a classifier needs at least 2 class folders"
        )
    if len(data.train) == 0:
        raise DataError(f"{data.name} has no training images")


def _split_train(
    full: Split, request: DataRequest, default_fraction: float | None
) -> tuple[Split, Split | None, str]:
    given = request.options.val_fraction
    fraction = given if given is not None else default_fraction
    if not fraction:
        return full, None, ""
    if not 0 < fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {fraction}")
    train_idx, val_idx = stratified_split(full.labels, fraction, request.options.seed)
    note = f"{fraction:.0%} of each class held out of train (seed {request.options.seed})"
    return full.subset(train_idx), full.subset(val_idx), note


def _with_test(name: str, classes: list[str], train: ImageTensors, test: ImageTensors,
               request: DataRequest, native: int) -> DataSplits:
    size, resize = request.geometry(native)
    train, test = resize_tensors(train, size, resize), resize_tensors(test, size, resize)
    train_part, val, note = _split_train(train, request, None)
    if val is None:
        return DataSplits(name, classes, train, test, test, "the test split", resize=resize)
    return DataSplits(name, classes, train_part, val, test, note, resize=resize)


def resize_tensors(split: ImageTensors, size: tuple[int, int],
                   resize: int | None) -> ImageTensors:
    """Apply the decoding geometry to images that came as tensors (MNIST, CIFAR-10 arrays):
    scale (bilinear, antialiased, as Pillow) so the shorter side is ``resize`` or just covers
    ``size``, then take the centred window. Nothing to do at the native size."""
    n, c, h, w = split.images.shape
    th, tw = size
    scale = resize / min(h, w) if resize else max(th / h, tw / w)
    if (h, w) == (th, tw) and scale == 1:
        return split
    sh, sw = max(th, round(h * scale)), max(tw, round(w * scale))
    top, left = (sh - th) // 2, (sw - tw) // 2
    out = torch.empty((n, c, th, tw), dtype=torch.uint8)
    for start in range(0, n, 2048):
        chunk = split.images[start:start + 2048].float()
        if (sh, sw) != (h, w):
            chunk = F.interpolate(chunk, size=(sh, sw), mode="bilinear", antialias=True,
                                  align_corners=False)
        out[start:start + 2048] = chunk[:, :, top:top + th, left:left + tw].round_().clamp_(
            0, 255).to(torch.uint8)
    key = None
    if split.key is not None:
        key = hashlib.sha256(f"{split.key}{size}{resize}".encode()).hexdigest()[:32]
    return ImageTensors(out, split.labels, split.paths, key, split.source_sizes)


# --- MNIST and Fashion-MNIST through torchvision (reads <root>/MNIST/raw as is) ---------------

def _folder_key(folder: Path, *extra: object) -> str | None:
    """`paths_key` of the files in ``folder``, or None when there is nothing to key on."""
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return paths_key(files, *extra) if files else None


def _torchvision_digits(request: DataRequest, cls_name: str, folder: str) -> DataSplits:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = request.root
    splits: dict[bool, object] = {}
    for train in (True, False):
        try:
            splits[train] = cls(str(root), train=train, download=False)
        except RuntimeError:
            if not request.options.download:
                raise DataError(_missing(request.name, root / folder / "raw", "")) from None
            try:
                splits[train] = cls(str(root), train=train, download=True)
            except Exception as e:  # no network, read-only root, server down...
                raise DataError(_missing(request.name, root / folder / "raw", str(e))) from None
    tr, te = splits[True], splits[False]
    key = _folder_key(root / folder / "raw", cls_name)
    train_split = ImageTensors(tr.data.unsqueeze(1).contiguous(), tr.targets.long(),  # type: ignore[attr-defined]
                               key=key and f"{key}-train")
    test_split = ImageTensors(te.data.unsqueeze(1).contiguous(), te.targets.long(),  # type: ignore[attr-defined]
                              key=key and f"{key}-test")
    return _with_test(request.name, list(tr.classes), train_split, test_split, request, 28)  # type: ignore[attr-defined]


def _missing(name: str, where: Path, why: str) -> str:
    because = f" and downloading failed ({why.splitlines()[0][:200]})" if why else ""
    return (
        f"dataset {name!r} was not found in {where}{because}. Put it there, point --data-root "
        "(or $DESCEND_DATA) at a folder that has it, or connect to the network to download it"
    )


@register("mnist", mirrorable=False)  # a mirrored digit is another shape, or none
def mnist(request: DataRequest) -> DataSplits:
    return _torchvision_digits(request, "MNIST", "MNIST")


@register("fashion-mnist")
def fashion_mnist(request: DataRequest) -> DataSplits:
    return _torchvision_digits(request, "FashionMNIST", "FashionMNIST")


# --- CIFAR-10: class folders (offline mirrors) or torchvision's pickled release ---------------

@register("cifar10")
def cifar10(request: DataRequest) -> DataSplits:
    folders = request.root / "cifar10"
    if is_split_layout(folders):
        return _folder_splits(folders, request, default_size=32, name=request.name)
    import torchvision.datasets as tvd

    try:
        tr = tvd.CIFAR10(str(request.root), train=True, download=False)
        te = tvd.CIFAR10(str(request.root), train=False, download=False)
    except RuntimeError:
        if not request.options.download:
            raise DataError(_missing("cifar10", folders, "")) from None
        try:
            tr = tvd.CIFAR10(str(request.root), train=True, download=True)
            te = tvd.CIFAR10(str(request.root), train=False, download=True)
        except Exception as e:
            where = f"{folders} (class folders) or {request.root / 'cifar-10-batches-py'}"
            raise DataError(_missing("cifar10", Path(where), str(e))) from None
    key = _folder_key(request.root / "cifar-10-batches-py", "cifar10")

    def tensors(ds: object, split: str) -> ImageTensors:
        pixels = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # type: ignore[attr-defined]
        return ImageTensors(pixels, torch.tensor(ds.targets, dtype=torch.int64),  # type: ignore[attr-defined]
                            key=key and f"{key}-{split}")

    return _with_test(request.name, list(tr.classes), tensors(tr, "train"), tensors(te, "test"),
                      request, 32)


def default_dataset(root: str | None, download: bool) -> tuple[str, str | None]:
    """The dataset a run with no ``--data`` trains on, and why when it is not CIFAR-10:
    CIFAR-10 where it is under ``root`` (or can be downloaded there now), else the built-in
    sample. Decided before the run folder is named, so that the folder says which."""
    where = data_root(root)
    if is_split_layout(where / "cifar10") or (where / "cifar-10-batches-py").is_dir():
        return "cifar10", None
    if not download:
        return "cifar10-sample", _missing("cifar10", where / "cifar10", "")
    import torchvision.datasets as tvd

    try:
        for train in (True, False):
            tvd.CIFAR10(str(where), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - no network, a full disk, a refused download...
        return "cifar10-sample", _missing("cifar10", where / "cifar10", str(e))
    return "cifar10", None


@register("cifar10-sample")
def cifar10_sample(request: DataRequest) -> DataSplits:
    """A stratified sample of CIFAR-10 shipped in the package (see sample/PROVENANCE.md)."""
    key = paths_key([SAMPLE_FILE], "cifar10-sample")
    with np.load(SAMPLE_FILE) as z:
        def split(prefix: str) -> ImageTensors:
            mosaic = np.asarray(Image.open(io.BytesIO(z[f"{prefix}_png"].tobytes())).convert("RGB"))
            n = int(z[f"{prefix}_labels"].shape[0])
            # the mosaic is one row of 32x32 tiles per image: (32*n, 32, 3) -> (n, 3, 32, 32)
            tiles = mosaic.reshape(n, 32, 32, 3).transpose(0, 3, 1, 2)
            return ImageTensors(torch.from_numpy(np.ascontiguousarray(tiles)),
                                torch.from_numpy(z[f"{prefix}_labels"].astype(np.int64)),
                                key=f"{key}-{prefix}")
        train, test = split("train"), split("test")
        classes = [str(c) for c in z["classes"]]
    return _with_test(request.name, classes, train, test, request, 32)


# --- imagefolder:PATH -------------------------------------------------------------------------

@register("imagefolder", argument="PATH")
def imagefolder(request: DataRequest) -> DataSplits:
    if not request.argument:
        raise DataError("imagefolder needs a path: --data imagefolder:PATH")
    root = Path(request.argument).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: give a folder of class sub-folders")
    # The absolute path, so that a checkpoint names data that `descend eval` finds from anywhere.
    return _folder_splits(root, request, default_size=64, name=f"imagefolder:{root.resolve()}")


def _drop_dead_classes(train: Split, classes: list[str]) -> tuple[Split, list[str], list[str]]:
    """A class whose every file was unusable is dropped like an empty folder."""
    counts = train.class_counts(len(classes))
    dead = [c for c, n in zip(classes, counts) if n == 0]
    if not dead:
        return train, classes, []
    alive = [c for c in classes if c not in dead]
    remap = torch.tensor([alive.index(c) if c in alive else -1 for c in classes])
    train.labels = remap[train.labels]
    return train, alive, [f"class {c!r} has no usable image and is skipped" for c in dead]


def _folder_splits(root: Path, request: DataRequest, default_size: int, name: str) -> DataSplits:
    size, resize = request.geometry(default_size)
    cache = TensorCache(request.cache)
    split_layout = is_split_layout(root)
    train_root = root / "train" if split_layout else root
    folders = _scan_folders(root, train_root, split_layout)
    # Decode everything if it fits the memory budget, else list the files for streaming.
    decoded_bytes = sum(f.count for f in folders.values()) * 3 * size[0] * size[1]
    lazy = decoded_bytes > memory_budget(request.options.memory_budget)
    options = dict(resize=resize, min_size=request.options.min_size, lazy=lazy,
                   progress=request.options.progress)
    train, classes, skipped, empty = load_class_folder(folders["train"], size, cache, None,
                                                       **options)  # type: ignore[arg-type]
    notes = [f"empty class folder skipped: {train_root / c}" for c in empty]
    skipped = list(skipped)
    train, classes, dead_notes = _drop_dead_classes(train, classes)
    notes += dead_notes
    if len(classes) < 2:
        raise DataError(
            f"{train_root} has {len(classes)} class(es) with usable images "
            f"({', '.join(classes) or 'none'}); a classifier needs at least 2 class folders, "
            f"each holding images: {train_root}/<class name>/*.jpg"
        )
    if lazy:
        budget = memory_budget(request.options.memory_budget)
        notes.append(f"{decoded_bytes / 1e6:,.0f} MB decoded would exceed the memory budget of "
                     f"{budget / 1e6:,.0f} MB: images are streamed from the files")
    extra: dict[str, Split] = {}
    for split in ("val", "test"):
        if split in folders:
            t, _, s, _ = load_class_folder(folders[split], size, cache, classes,
                                           **options)  # type: ignore[arg-type]
            skipped += s
            extra[split] = t
    train, val, test, val_source = _validation(root, train, extra, request)
    return DataSplits(name, classes, train, val, test, val_source, skipped, notes,
                      resize=resize)


def _scan_folders(root: Path, train_root: Path, split_layout: bool) -> dict[str, ClassFolder]:
    """The class folders of each split present: train, and val/test in the split layout."""
    folders = {"train": scan_class_folder(train_root)}
    if split_layout:
        folders.update({s: scan_class_folder(root / s) for s in ("val", "test")
                        if (root / s).is_dir()})
    elif not folders["train"].classes and not folders["train"].empty and any(
            p.is_file() for p in root.iterdir()):
        raise DataError(
            f"{root} holds files but no class sub-folders: put each class's images in "
            f"{root}/<class name>/"
        )
    return folders


def _validation(root: Path, train: Split, extra: dict[str, Split], request: DataRequest
                ) -> tuple[Split, Split, Split | None, str]:
    """(train, val, test, where val came from): a val/ folder, else test/, else held out."""
    if "val" in extra and request.options.val_fraction is None:
        return train, extra["val"], extra.get("test"), f"{root / 'val'}"
    if "test" in extra and request.options.val_fraction is None:
        return train, extra["test"], extra["test"], "the test split"
    train, val, val_source = _split_train(train, request, 0.2)
    if val is None:
        raise DataError(
            f"{root} has no val/ or test/ folder, so validation needs --val-fraction above 0"
        )
    return train, val, extra.get("test"), val_source
