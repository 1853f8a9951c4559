"""Datasets by name (SPEC §3): ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar10-sample`` and
``imagefolder:PATH``. Each factory returns `DataSplits` of decoded uint8 tensors.

Validation: public datasets validate on their official test split unless ``val_fraction`` is
given (then a stratified part of train is held out and test stays for ``descend eval``); a flat
image folder holds out ``val_fraction`` (default 0.2) of each class.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from descend.data.cache import TensorCache
from descend.data.folder import is_split_layout, list_classes, load_class_folder
from descend.data.paths import cache_dir, data_root
from descend.data.splits import DataSplits, ImageTensors, stratified_split
from descend.errors import DataError
from descend.registry import Registry

log = logging.getLogger("descend")

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
SAMPLE_FILE = Path(__file__).parent / "sample" / "cifar10-sample.npz"


@dataclass
class DataRequest:
    """What the caller asks of a dataset; the fields mirror the data options of `TrainConfig`."""

    name: str
    root: Path
    cache: Path
    image_size: int | None = None
    val_fraction: float | None = None
    seed: int = 0
    download: bool = True
    strict: bool = False
    progress: bool = True

    @property
    def argument(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else ""


DATASETS: Registry[Callable[[DataRequest], DataSplits]] = Registry("dataset")


def load_dataset(
    name: str,
    root: str | Path | None = None,
    cache: str | Path | None = None,
    **options: object,
) -> DataSplits:
    """Load a dataset by name, e.g. ``load_dataset("imagefolder:data/pets", image_size=64)``."""
    kind = name.split(":", 1)[0]
    request = DataRequest(name, data_root(root), cache_dir(cache), **options)  # type: ignore[arg-type]
    data = DATASETS.get(kind)(request)
    _check_usable(data, request)
    return data


def _check_usable(data: DataSplits, request: DataRequest) -> None:
    if request.strict and data.skipped:
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
    full: ImageTensors, request: DataRequest, default_fraction: float | None
) -> tuple[ImageTensors, ImageTensors | None, str]:
    fraction = request.val_fraction if request.val_fraction is not None else default_fraction
    if not fraction:
        return full, None, ""
    if not 0 < fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {fraction}")
    train_idx, val_idx = stratified_split(full.labels, fraction, request.seed)
    note = f"{fraction:.0%} of each class held out of train (seed {request.seed})"
    return full.subset(train_idx), full.subset(val_idx), note


def _with_test(name: str, classes: list[str], train: ImageTensors, test: ImageTensors,
               request: DataRequest) -> DataSplits:
    train, val, note = _split_train(train, request, None)
    if val is None:
        return DataSplits(name, classes, train, test, test, "the test split")
    return DataSplits(name, classes, train, val, test, note)


# --- MNIST and Fashion-MNIST through torchvision (reads <root>/MNIST/raw as is) ---------------

def _torchvision_digits(request: DataRequest, cls_name: str, folder: str) -> DataSplits:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = request.root
    splits: dict[bool, object] = {}
    for train in (True, False):
        try:
            splits[train] = cls(str(root), train=train, download=False)
        except RuntimeError:
            if not request.download:
                raise DataError(_missing(request.name, root / folder / "raw", "")) from None
            try:
                splits[train] = cls(str(root), train=train, download=True)
            except Exception as e:  # no network, read-only root, server down...
                raise DataError(_missing(request.name, root / folder / "raw", str(e))) from None
    tr, te = splits[True], splits[False]
    train = ImageTensors(tr.data.unsqueeze(1).contiguous(), tr.targets.long())  # type: ignore[attr-defined]
    test = ImageTensors(te.data.unsqueeze(1).contiguous(), te.targets.long())  # type: ignore[attr-defined]
    return _with_test(request.name, list(tr.classes), train, test, request)  # type: ignore[attr-defined]


def _missing(name: str, where: Path, why: str) -> str:
    because = f" and downloading failed ({why.splitlines()[0][:200]})" if why else ""
    return (
        f"dataset {name!r} was not found in {where}{because}. Put it there, point --data-root "
        "(or $DESCEND_DATA) at a folder that has it, or connect to the network to download it"
    )


@DATASETS.register("mnist")
def mnist(request: DataRequest) -> DataSplits:
    return _torchvision_digits(request, "MNIST", "MNIST")


@DATASETS.register("fashion-mnist")
def fashion_mnist(request: DataRequest) -> DataSplits:
    return _torchvision_digits(request, "FashionMNIST", "FashionMNIST")


# --- CIFAR-10: class folders (offline mirrors) or torchvision's pickled release ---------------

@DATASETS.register("cifar10")
def cifar10(request: DataRequest) -> DataSplits:
    folders = request.root / "cifar10"
    if is_split_layout(folders):
        data = _folder_splits(folders, request, default_size=32, name=request.name)
        return data
    import torchvision.datasets as tvd

    try:
        tr = tvd.CIFAR10(str(request.root), train=True, download=False)
        te = tvd.CIFAR10(str(request.root), train=False, download=False)
    except RuntimeError:
        if not request.download:
            raise DataError(_missing("cifar10", folders, "")) from None
        try:
            tr = tvd.CIFAR10(str(request.root), train=True, download=True)
            te = tvd.CIFAR10(str(request.root), train=False, download=True)
        except Exception as e:
            where = f"{folders} (class folders) or {request.root / 'cifar-10-batches-py'}"
            raise DataError(_missing("cifar10", Path(where), str(e))) from None

    def tensors(ds: object) -> ImageTensors:
        pixels = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # type: ignore[attr-defined]
        return ImageTensors(pixels, torch.tensor(ds.targets, dtype=torch.int64))  # type: ignore[attr-defined]

    return _with_test(request.name, list(tr.classes), tensors(tr), tensors(te), request)


@DATASETS.register("cifar10-sample")
def cifar10_sample(request: DataRequest) -> DataSplits:
    """A stratified sample of CIFAR-10 shipped in the package (see sample/PROVENANCE.md)."""
    with np.load(SAMPLE_FILE) as z:
        def split(prefix: str) -> ImageTensors:
            mosaic = np.asarray(Image.open(io.BytesIO(z[f"{prefix}_png"].tobytes())).convert("RGB"))
            n = int(z[f"{prefix}_labels"].shape[0])
            # the mosaic is one row of 32x32 tiles per image: (32*n, 32, 3) -> (n, 3, 32, 32)
            tiles = mosaic.reshape(n, 32, 32, 3).transpose(0, 3, 1, 2)
            return ImageTensors(torch.from_numpy(np.ascontiguousarray(tiles)),
                                torch.from_numpy(z[f"{prefix}_labels"].astype(np.int64)))
        train, test = split("train"), split("test")
        classes = [str(c) for c in z["classes"]]
    return _with_test(request.name, classes, train, test, request)


# --- imagefolder:PATH -------------------------------------------------------------------------

@DATASETS.register("imagefolder")
def imagefolder(request: DataRequest) -> DataSplits:
    if not request.argument:
        raise DataError("imagefolder needs a path: --data imagefolder:PATH")
    root = Path(request.argument).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: give a folder of class sub-folders")
    return _folder_splits(root, request, default_size=64, name=request.name)


def _folder_splits(root: Path, request: DataRequest, default_size: int, name: str) -> DataSplits:
    size = request.image_size or default_size
    hw = (size, size)
    cache = TensorCache(request.cache)
    split_layout = is_split_layout(root)
    train_root = root / "train" if split_layout else root
    if not split_layout:
        found, empty = list_classes(root)
        if not found and not empty and any(f.is_file() for f in root.iterdir()):
            raise DataError(
                f"{root} holds files but no class sub-folders: put each class's images in "
                f"{root}/<class name>/"
            )
    train, classes, skipped, empty = load_class_folder(train_root, hw, cache, None,
                                                       request.progress)
    notes = [f"empty class folder skipped: {train_root / c}" for c in empty]
    skipped = list(skipped)
    # A class whose every file was unusable is dropped like an empty folder.
    counts = train.class_counts(len(classes))
    dead = [c for c, n in zip(classes, counts) if n == 0]
    if dead:
        notes += [f"class {c!r} has no usable image and is skipped" for c in dead]
        alive = [c for c in classes if c not in dead]
        remap = torch.tensor([alive.index(c) if c in alive else -1 for c in classes])
        train = ImageTensors(train.images, remap[train.labels], train.paths)
        classes = alive
    if len(classes) < 2:
        raise DataError(
            f"{train_root} has {len(classes)} class(es) with usable images "
            f"({', '.join(classes) or 'none'}); a classifier needs at least 2 class folders, "
            f"each holding images: {train_root}/<class name>/*.jpg"
        )
    test = None
    if split_layout:
        extra = {}
        for split in ("val", "test"):
            if (root / split).is_dir():
                t, _, s, _ = load_class_folder(root / split, hw, cache, classes, request.progress)
                skipped += s
                extra[split] = t
        if "val" in extra and request.val_fraction is None:
            val, val_source = extra["val"], f"{root / 'val'}"
            test = extra.get("test")
        elif "test" in extra and "val" not in extra and request.val_fraction is None:
            val, test, val_source = extra["test"], extra["test"], "the test split"
        else:
            train, maybe_val, val_source = _split_train(train, request, 0.2)
            val, test = maybe_val, extra.get("test")  # type: ignore[assignment]
    else:
        train, maybe_val, val_source = _split_train(train, request, 0.2)
        val = maybe_val  # type: ignore[assignment]
    if val is None:
        raise DataError(
            f"{root} has no val/ or test/ folder, so validation needs --val-fraction above 0"
        )
    return DataSplits(name, classes, train, val, test, val_source, skipped, notes)
