"""``descend eval``: accuracy, per-class precision and recall, a confusion matrix and the
misclassified examples of a checkpoint on a dataset split, worst first."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from descend.config import TrainConfig
from descend.data.batching import LoaderOptions
from descend.data.datasets import load_dataset
from descend.data.images import BadImage
from descend.data.loader import make_loader
from descend.data.splits import DataSplits, ImageFiles, ImageTensors
from descend.errors import DataError
from descend.evaluation.explain import Explainer
from descend.reports.plots import plot_confusion, plot_explanation_grid, plot_image_grid
from descend.runtime.checkpoint import LoadedModel, load_model
from descend.runtime.device import pick_device
from descend.runtime.inference import predict_batches

# Mistakes listed and drawn: five rows of eight, enough to see what the model gets wrong.
TOP_LOSSES = 40


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, n: int) -> torch.Tensor:
    """``m[i, j]`` counts images of true class i predicted as j."""
    return torch.bincount(labels * n + preds, minlength=n * n).view(n, n)


def per_class(matrix: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    tp = matrix.diag().double()
    predicted, actual = matrix.sum(0).double(), matrix.sum(1).double()
    rows = []
    for i, c in enumerate(classes):
        rows.append({
            "class": c,
            "precision": (tp[i] / predicted[i]).item() if predicted[i] else 0.0,
            "recall": (tp[i] / actual[i]).item() if actual[i] else 0.0,
            "support": int(actual[i].item()),
        })
    return rows


def top_losses(logits: torch.Tensor, labels: torch.Tensor, n: int = TOP_LOSSES) -> torch.Tensor:
    """Indices of the misclassified images, highest cross-entropy first (fastai's top losses):
    the confident mistakes, which show mislabelled images and real confusions first."""
    losses = F.cross_entropy(logits, labels, reduction="none")
    wrong = torch.nonzero(logits.argmax(1) != labels).flatten()
    return wrong[losses[wrong].argsort(descending=True, stable=True)][:n]


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str | None = None,
    out_dir: str | Path | None = None,
    data_root: str | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
    explain: bool = True,
    claim: Callable[[Path], Path] | None = None,
) -> dict[str, Any]:
    """Evaluate on ``split`` (default: test if the dataset has one, else validation), writing
    the plots into ``out_dir`` (default: ``eval-<split>/`` beside the checkpoint).

    ``claim``, given the folder once the split is known and before the model runs, returns the
    folder to write into or raises (``descend eval`` refuses to write over an earlier
    evaluation without ``--overwrite`` there, before the minutes of work, not after).

    ``explain`` adds ``misclassified-explained.png``: the top-loss grid again, each picture
    under its heat map of the evidence for the (wrong) class it was given
    (`descend.evaluation.explain`).
    """
    dev = pick_device(device)
    loaded = load_model(checkpoint, dev)
    name = data or run_data_name(loaded.checkpoint)
    splits = _load_run_data(loaded, name, data_root, cache_dir, progress)
    split = split or ("test" if splits.test is not None else "val")
    tensors = {"train": splits.train, "val": splits.val, "test": splits.test}.get(split)
    if tensors is None:
        raise DataError(f"{name} has no {split!r} split; use --split val or --split train")
    run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    out = Path(out_dir) if out_dir else run_dir / f"eval-{split}"
    if claim is not None:
        out = claim(out)
    batches = make_loader(tensors, LoaderOptions(batch_size, loaded.mean, loaded.std, device=dev))
    logits, labels = predict_batches(loaded.model, batches, dev)
    preds = logits.argmax(1)
    matrix = confusion_matrix(labels, preds, len(loaded.classes))
    mistakes = _mistakes(logits, labels, loaded.classes, tensors)
    explainer = Explainer(loaded, dev) if explain else None
    files = _plots(out, matrix, loaded.classes, tensors, mistakes, explainer)
    return {
        "checkpoint": str(checkpoint),
        "data": name,
        "split": split,
        "images": int(len(labels)),
        "accuracy": (preds == labels).float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "per_class": per_class(matrix, loaded.classes),
        "confusion_matrix": matrix.tolist(),
        "classes": loaded.classes,
        "top_losses": mistakes,
        "files": files,
    }


def run_data_name(checkpoint: dict[str, Any]) -> str:
    """The dataset a checkpoint was trained on."""
    name = checkpoint.get("data")
    if not name:
        raise DataError("the checkpoint does not say what it was trained on; give --data")
    return str(name)


def _load_run_data(loaded: LoadedModel, name: str, data_root: str | None,
                   cache_dir: str | None, progress: bool) -> DataSplits:
    """The dataset as the run split and decoded it, at the model's input size, checked to fit."""
    cfg, size = loaded.checkpoint["config"], loaded.spec.image_size
    # The data where the user points now, else where the run found it.
    root = data_root or cfg.get("data_root") or os.environ.get("DESCEND_DATA") or \
        loaded.checkpoint.get("data_root")
    options = TrainConfig.from_dict(cfg, "the checkpoint's config").data_options(
        image_size=size[0], progress=progress)
    splits = load_dataset(name, root, cache_dir or cfg.get("cache_dir"), options)
    if splits.classes != loaded.classes:
        raise DataError(
            f"{name} has classes {splits.classes} but the checkpoint was trained on "
            f"{loaded.classes}; evaluate on a dataset with the same classes"
        )
    if splits.channels != loaded.spec.in_channels or splits.image_size != size:
        raise DataError(
            f"{name} gives {splits.channels}x{splits.image_size} images; the model takes "
            f"{loaded.spec.in_channels}x{size}"
        )
    return splits


def _mistakes(logits: torch.Tensor, labels: torch.Tensor, classes: list[str],
              tensors: ImageTensors | ImageFiles) -> list[dict[str, Any]]:
    """The `top_losses`: position in the split, file (when known), true and predicted class,
    the predicted class's probability and the loss."""
    # A file the streaming loader found unusable is dropped from its batch, so positions in
    # the split are known only when every image came back.
    aligned = len(labels) == len(tensors)
    paths = tensors.paths if aligned else None
    probs, losses = F.softmax(logits, 1), F.cross_entropy(logits, labels, reduction="none")
    rows = []
    for i in top_losses(logits, labels).tolist():
        pred = int(probs[i].argmax())
        rows.append({"index": i if aligned else None, "path": paths[i] if paths else None,
                     "true": classes[int(labels[i])], "predicted": classes[pred],
                     "probability": probs[i, pred].item(), "loss": losses[i].item()})
    return rows


def _plots(out: Path, matrix: torch.Tensor, classes: list[str], tensors: ImageTensors | ImageFiles,
           mistakes: list[dict[str, Any]], explainer: Explainer | None = None
           ) -> dict[str, str | None]:
    """The confusion matrix, and a grid of the top-loss mistakes, worst first (and, with an
    ``explainer``, the same grid with each picture's heat map for its predicted class)."""
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(matrix, classes, out / "confusion.png")
    images, titles, predicted = [], [], []
    for m in mistakes:
        pixels = _pixels(tensors, m["index"])
        if pixels is not None:
            images.append(pixels)
            titles.append(f"{m['true']} -> {m['predicted']} {m['probability']:.2f}")
            predicted.append(classes.index(m["predicted"]))
    grid = explained = None
    if images:
        grid = out / "misclassified.png"
        plot_image_grid(torch.stack(images), titles, grid)
    if images and explainer is not None:
        explained = out / "misclassified-explained.png"
        stacked = torch.stack(images)
        what = explainer.describe()
        plot_explanation_grid(stacked, explainer.maps(stacked, torch.tensor(predicted)), titles,
                              explained, caption=f"evidence for the predicted class: "
                              f"{what['method']}" + (f" at {what['layer']}" if what["layer"]
                                                     else ""))
    files = {"confusion": str(out / "confusion.png"), "misclassified": str(grid) if grid else None}
    if explainer is not None:
        files["misclassified_explained"] = str(explained) if explained else None
    return files


def _pixels(tensors: ImageTensors | ImageFiles, index: int | None) -> torch.Tensor | None:
    """Image ``index`` of the split as the model saw it: from memory, or decoded again from its
    file as the streaming loader decoded it; None when unknown or no longer readable."""
    if index is None:
        return None
    if isinstance(tensors, ImageTensors):
        return tensors.images[index]
    try:
        return torch.from_numpy(tensors.load(index))
    except BadImage:  # changed on disk since the pass: leave it out of the picture
        return None
