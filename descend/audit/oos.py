"""Out-of-sample predictions for every labelled image: k-fold cross-validation.

Confident learning needs, for each image, class probabilities from a model that never trained
on it: a model that saw an image with its wrong label has learnt that label. So the images are
cut into ``folds`` stratified parts; for each part a model trains (`descend.training.train`, the
model's own recipe, a share of the time budget) on the others and predicts it. The first fold's
plan chooses the model's size; the other folds train the same one, so that every image is
judged by a model alike (a busy machine could otherwise make a later plan choose a smaller).
The first fold's model also embeds every image (the input of its last linear layer), for the
near-duplicate search: a copy and its original land close there, whichever fold they are in.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from descend.config import TrainConfig, parse_duration
from descend.cpu import multiplies_bf16
from descend.data.splits import DataSplits, ImageTensors
from descend.errors import DataError
from descend.evaluation.predict import Classifier
from descend.training.trainer import train


@dataclass
class Pool:
    """Every labelled image of a dataset, its split named per image."""

    images: ImageTensors
    splits: list[str]  # "train", "val" or "test", per image

    @classmethod
    def of(cls, data: DataSplits) -> Pool:
        """The distinct splits of ``data`` in one pool (test only where it is its own)."""
        parts = [("train", data.train), ("val", data.val)]
        if data.test is not None and data.test is not data.val:
            parts.append(("test", data.test))
        tensors = [split for _, split in parts if isinstance(split, ImageTensors)]
        if len(tensors) < len(parts):
            raise DataError(f"{data.name} is too large to decode into memory, and an audit "
                            "needs every image at hand: audit a smaller folder, or raise "
                            "$DESCEND_MEMORY_BUDGET (bytes)")
        paths: list[str] = [p for t in tensors for p in (t.paths or [])]
        images = ImageTensors(torch.cat([t.images for t in tensors]),
                              torch.cat([t.labels for t in tensors]),
                              paths if len(paths) == sum(map(len, tensors)) else None)
        return cls(images, [name for name, t in parts for _ in range(len(t))])

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class OutOfSample:
    """``probabilities`` (N, classes), each row from a model that did not train on the image
    (only the rows of ``covered`` are: the others are zero); ``embeddings`` (N, D),
    L2-normalised, all from one model; ``accuracy`` of the argmax over the covered rows."""

    probabilities: torch.Tensor
    embeddings: torch.Tensor
    accuracy: float
    fold_seconds: list[float]
    covered: torch.Tensor  # bool (N,)


def fold_indices(labels: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """``folds`` disjoint index sets that cover every image, each class spread evenly."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(folds)]
    offset = 0
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        for k in range(folds):  # class by class, continuing where the last class ended
            parts[(k + offset) % folds].append(idx[k::folds])
        offset += len(idx)
    return [torch.sort(torch.cat(p)).values for p in parts]


def cross_validate(data: DataSplits, pool: Pool, cfg: TrainConfig, folds: int,
                   log: Callable[[str], None], work: Path | None = None) -> OutOfSample:
    """Out-of-sample probabilities for every image of ``pool`` from ``folds`` models trained
    with ``cfg`` (its ``time_budget``, if any, is shared between the folds)."""
    labels = pool.images.labels
    smallest = int(torch.bincount(labels).min())
    if not 2 <= folds <= smallest:
        raise DataError(f"--folds {folds}: each class needs an image in every fold and the "
                        f"smallest class has {smallest}; give --folds from 2 to {smallest}"
                        if smallest >= 2 else
                        f"a class of {data.name} has {smallest} image: cross-validation needs "
                        "at least 2 per class")
    per_fold = (f"{parse_duration(cfg.time_budget) / folds:.1f}s" if cfg.time_budget
                else None)
    probabilities = torch.zeros(len(pool), len(data.classes))
    embeddings: torch.Tensor | None = None
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        parts = fold_indices(labels, folds, cfg.seed)
        for k, held in enumerate(parts):
            kept = torch.cat([p for j, p in enumerate(parts) if j != k]).sort().values
            fold = DataSplits(f"{data.name} (fold {k + 1} of {folds})", data.classes,
                              pool.images.subset(kept), pool.images.subset(held),
                              val_source=f"fold {k + 1} of {folds}", cache=data.cache,
                              resize=data.resize)
            log(f"fold {k + 1} of {folds}: training on {len(kept)} images, predicting "
                f"{len(held)}" + (f" ({per_fold})" if per_fold else ""))
            result = train(cfg.updated(out=str(Path(tmp) / f"fold{k + 1}"), time_budget=per_fold,
                                       val_every=0, progress=False),
                           splits=fold)
            if k == 0 and result.plan is not None:  # every fold trains the model the first
                chosen = result.plan.cfg                # fold's plan chose (its widths)
                cfg = cfg.updated(model=chosen.model, model_args=dict(chosen.model_args))
            seconds.append(sum(r["seconds"] + (r["val_seconds"] or 0) for r in result.history))
            classifier = Classifier.load(result.run_dir / "best.pt", cfg.device)
            probabilities[held] = F.softmax(classifier.logits(pool.images.images[held]), dim=1)
            if embeddings is None:
                embeddings = embed(classifier, pool.images.images)
    assert embeddings is not None
    accuracy = float((probabilities.argmax(1) == labels).float().mean())
    return OutOfSample(probabilities, embeddings, accuracy, seconds,
                       torch.ones(len(pool), dtype=torch.bool))


def from_features(data: DataSplits, pool: Pool, backbone: str, folds: int, seed: int,
                  device: str, log: Callable[[str], None]) -> OutOfSample:
    """Out-of-sample probabilities from ``folds`` logistic-regression heads on ``backbone``'s
    ImageNet features, computed once for every image and its mirror image
    (`descend.training.fitting.features`): seconds where training fold models takes minutes, and far
    stronger on a few hundred photos. An image's probabilities are the mean over its two views,
    from the head that saw neither; its embedding is its features, for the duplicate search."""
    from descend.data.batching import Normalize
    from descend.models import ModelSpec, create_model
    from descend.models.efficientnet_lite import MEAN, STD, imagenet_state_dict
    from descend.runtime.device import pick_device
    from descend.training.fitting.features import (
        choose_strength,
        cross_val_probabilities,
        extract,
        first_rows,
    )

    start = time.monotonic()
    where = pick_device(device)
    model = create_model(ModelSpec(backbone, 1000, 3, data.image_size)).to(where)
    model.load_state_dict(imagenet_state_dict(backbone))
    normalize = Normalize(MEAN, STD, where)
    amp = multiplies_bf16(where)
    images, labels = pool.images.images, pool.images.labels
    batches = ((normalize(images[i:i + 64].to(where)), labels[i:i + 64])
               for i in range(0, len(pool), 64))
    features = extract(model, batches, where, amp, mirrored=True)
    classes = len(data.classes)
    strength, cv = choose_strength(features, classes, seed, folds)
    probs = cross_val_probabilities(features, classes, strength, folds, seed)
    # An image's two rows (itself, then its mirror image) share its group: their mean.
    probabilities = torch.zeros(len(pool), classes).index_add_(0, features.groups, probs) / 2
    plain = features.values[first_rows(features.groups)]  # each image's own view, in order
    accuracy = float((probabilities.argmax(1) == pool.images.labels).float().mean())
    seconds = time.monotonic() - start
    log(f"{backbone}'s ImageNet features of {len(pool)} images and their mirror images, "
        f"{folds} logistic-regression folds (L2 strength {strength:g}, chosen by "
        f"cross-validation): {seconds:.1f} s")
    return OutOfSample(probabilities, F.normalize(plain, dim=1), accuracy, [seconds],
                       torch.ones(len(pool), dtype=torch.bool))


def judged_by_run(classifier: Classifier, data: DataSplits, pool: Pool) -> OutOfSample:
    """``--from RUN``: the run's model has not trained on its validation images, so their
    probabilities are out of sample; the rest of the pool gets embeddings only."""
    if classifier.classes != data.classes:
        raise DataError(f"the run was trained on classes {classifier.classes}, {data.name} has "
                        f"{data.classes}: audit with the run of this dataset")
    covered = torch.tensor([s == "val" for s in pool.splits])
    probabilities = torch.zeros(len(pool), len(data.classes))
    probabilities[covered] = F.softmax(classifier.logits(pool.images.images[covered]), dim=1)
    labels = pool.images.labels[covered]
    accuracy = float((probabilities[covered].argmax(1) == labels).float().mean())
    return OutOfSample(probabilities, embed(classifier, pool.images.images), accuracy, [],
                       covered)


@torch.no_grad()
def embed(classifier: Classifier, pixels: torch.Tensor) -> torch.Tensor:
    """(N, D) unit vectors: the input of the model's last linear layer for each image (the
    first time it runs per batch: with test-time augmentation, the image as it is)."""
    model = classifier.loaded.model.eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, args, _out: captured.append(
        args[0].detach().float().flatten(1).cpu()))
    rows = []
    try:
        for i in range(0, len(pixels), classifier.batch_size):
            captured.clear()
            model(classifier.normalize(pixels[i:i + classifier.batch_size].to(
                classifier.device)))
            rows.append(captured[0])
    finally:
        hook.remove()
    return F.normalize(torch.cat(rows), dim=1)
