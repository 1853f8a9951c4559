"""A new head on a frozen backbone's features, computed once: the fast path for photos.

Fine-tuning a pretrained network on a 2-core CPU runs the whole backbone forward and backward
every epoch; a linear head on its features needs the backbone's forward pass once per image.
`extract` computes the pooled features of a split (in eval mode: the backbone's batch
statistics stay ImageNet's), optionally of its mirror images too, and `fit_head` fits the head
on them as an L2-regularised multinomial logistic regression:

    minimise over W, b   (1/n) sum_i CE(softmax(W z_i + b), y_i) + lam * ||W||^2,
    z_i = (f_i - mu) / sigma   (each feature standardised over the training split),

solved to convergence by L-BFGS (a convex problem: no learning rate, no epochs). ``lam`` is
chosen by k-fold cross-validation on the training split alone (the lowest held-out
cross-entropy over `STRENGTHS`), so the validation split stays a fair measure. The fitted head
is folded back into the model's own ``Linear`` (W / sigma and b - W mu / sigma), so the
checkpoint is an ordinary model that predict, eval, serve and export run as they are.

`cross_val_probabilities` is the same fit on k-1 folds, scored on the k-th: the out-of-sample
probabilities that ``descend audit`` judges labels by.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from descend.errors import ConfigError
from descend.runtime.precision import autocast

# The regularisation strengths cross-validation chooses from (on standardised features).
STRENGTHS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
FOLDS = 5
LBFGS_STEPS = 200


@dataclass
class Features:
    """Pooled features (float32, on the CPU), their labels, and which image each row is (a
    mirrored view shares its image's ``group``, so a fold never splits an image's views)."""

    values: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def has_features(model: nn.Module) -> bool:
    """Whether ``model`` exposes ``features(x)`` and a ``classifier`` Linear (the
    efficientnet_lite models do)."""
    return callable(getattr(model, "features", None)) and isinstance(
        getattr(model, "classifier", None), nn.Linear)


@torch.no_grad()
def extract(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            device: torch.device, amp: bool = False, mirrored: bool = False) -> Features:
    """The features of every image of ``batches`` (normalized, unaugmented); with
    ``mirrored``, of its left-right mirror image too, as a second row in the same group."""
    if not has_features(model):
        raise ConfigError("the cached head needs a model with features() and a classifier "
                          "(the efficientnet_lite models); train others with --epochs")
    model.eval()
    values, labels, groups = [], [], []
    seen = 0
    for x, y in batches:
        views = (x, x.flip(-1)) if mirrored else (x,)
        index = torch.arange(seen, seen + len(y))
        for view in views:
            with autocast(device, amp):
                values.append(model.features(view).float().cpu())  # type: ignore[operator]
            labels.append(y.cpu())
            groups.append(index)
        seen += len(y)
    if not values:
        return Features(torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64),
                        torch.zeros(0, dtype=torch.int64))
    return Features(torch.cat(values), torch.cat(labels), torch.cat(groups))


@dataclass
class LinearHead:
    """A fitted head on raw features: ``logits = features @ weight.T + bias``."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor
    strength: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T + self.bias

    def load_into(self, layer: nn.Linear) -> None:
        with torch.no_grad():
            layer.weight.copy_(self.weight.to(layer.weight))
            layer.bias.copy_(self.bias.to(layer.bias))


def fit_linear(features: torch.Tensor, labels: torch.Tensor, classes: int,
               strength: float) -> LinearHead:
    """The logistic regression of the module docstring, at strength ``lam``, folded back to
    raw features."""
    mu = features.mean(0)
    sigma = features.std(0, unbiased=False).clamp_min(1e-6)
    z = ((features - mu) / sigma).double()
    y = labels.long()
    w = torch.zeros(classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=LBFGS_STEPS, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, y) + strength * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    weight = (w.detach() / sigma.double()).float()
    bias = (b.detach() - (w.detach() * (mu / sigma).double()).sum(1)).float()
    return LinearHead(weight, bias, strength)


def folds(groups: torch.Tensor, labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """A fold number per row: images (groups) dealt to ``k`` folds class by class, in a
    seeded random order, so that every fold holds each class's share."""
    g = torch.Generator().manual_seed(seed)
    first = {int(gr): int(lab) for gr, lab in zip(groups.tolist(), labels.tolist())}
    fold_of: dict[int, int] = {}
    for cls in sorted(set(first.values())):
        members = [gr for gr, lab in first.items() if lab == cls]
        order = torch.randperm(len(members), generator=g).tolist()
        for position, i in enumerate(order):
            fold_of[members[i]] = position % k
    return torch.tensor([fold_of[int(gr)] for gr in groups.tolist()])


def cross_val_probabilities(data: Features, classes: int, strength: float, k: int = FOLDS,
                            seed: int = 0) -> torch.Tensor:
    """Each row's class probabilities from a head fitted on the other folds (rows of one
    image share a fold)."""
    assignment = folds(data.groups, data.labels, k, seed)
    probs = torch.zeros(len(data), classes)
    for fold in range(k):
        held = assignment == fold
        if held.all() or not held.any():
            continue
        head = fit_linear(data.values[~held], data.labels[~held], classes, strength)
        probs[held] = head.logits(data.values[held]).softmax(1)
    return probs


def fold_count(data: Features, classes: int, k: int = FOLDS) -> int:
    """``k``, or fewer where a class has fewer than ``k`` images (at least 2)."""
    per_class = torch.bincount(data.labels[first_rows(data.groups)], minlength=classes)
    return max(2, min(k, int(per_class.min())))


def choose_strength(data: Features, classes: int, seed: int = 0,
                    k: int = FOLDS) -> tuple[float, dict[float, float]]:
    """The strength of `STRENGTHS` with the lowest k-fold held-out cross-entropy, and each
    one's held-out accuracy (for the log). Fewer than k images a class: fewer folds
    (`fold_count`)."""
    k = fold_count(data, classes, k)
    scores: dict[float, tuple[float, float]] = {}
    for strength in STRENGTHS:
        probs = cross_val_probabilities(data, classes, strength, k, seed)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), data.labels).item()
        scores[strength] = (loss, (probs.argmax(1) == data.labels).float().mean().item())
    best = min(STRENGTHS, key=lambda s: scores[s][0])
    return best, {s: acc for s, (_, acc) in scores.items()}


def first_rows(groups: torch.Tensor) -> list[int]:
    """The first row of each group, in order: an image's own view (`extract` writes it before
    its mirror image)."""
    seen: set[int] = set()
    rows = []
    for i, gr in enumerate(groups.tolist()):
        if gr not in seen:
            seen.add(gr)
            rows.append(i)
    return rows


@dataclass
class HeadResult:
    """What fitting the head measured, as an epoch's row reports it."""

    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float
    images: int
    strength: float
    cv_acc: float
    folds: int


def fit_head(model: nn.Module, train: Iterable[tuple[torch.Tensor, torch.Tensor]],
             val: Iterable[tuple[torch.Tensor, torch.Tensor]] | None, classes: int,
             device: torch.device, amp: bool, seed: int) -> HeadResult:
    """Fit ``model.classifier`` on the frozen features of ``train`` (and their mirror images),
    its strength chosen by cross-validation; measure it on ``val``'s features."""
    start = time.perf_counter()
    data = extract(model, train, device, amp, mirrored=True)
    if len(data) == 0:
        raise ConfigError("no training image could be read for the cached head")
    strength, cv = choose_strength(data, classes, seed)
    head = fit_linear(data.values, data.labels, classes, strength)
    head.load_into(model.classifier)  # type: ignore[arg-type]
    train_logits = head.logits(data.values)
    val_loss = val_acc = None
    if val is not None:
        held = extract(model, val, device, amp)
        if len(held):
            val_logits = head.logits(held.values)
            val_loss = F.cross_entropy(val_logits, held.labels).item()
            val_acc = (val_logits.argmax(1) == held.labels).float().mean().item()
    return HeadResult(F.cross_entropy(train_logits, data.labels).item(),
                      (train_logits.argmax(1) == data.labels).float().mean().item(),
                      val_loss, val_acc, time.perf_counter() - start, len(data), strength,
                      cv[strength], fold_count(data, classes))
