"""One training epoch and one evaluation pass: the inner loops, read top to bottom."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from descend.errors import DataError, DescendError
from descend.runtime.inference import predict_batches
from descend.runtime.precision import autocast
from descend.training.fitting.distributed import active, sum_over_ranks


@dataclass
class EpochResult:
    loss: float
    acc: float
    seconds: float
    images: int


@dataclass
class RunningMetrics:
    """Sums over the steps so far, kept on the device: reading them costs a host sync."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    steps: int = 0
    last_loss: torch.Tensor | None = None  # the latest step's mean loss, on the device too

    @property
    def loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    @property
    def acc(self) -> float:
        return self.correct.item() / max(self.seen, 1)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    label_smoothing: float = 0.0,
    device: torch.device,
    amp: bool = False,
    on_step: Callable[[RunningMetrics], None] | None = None,
    frozen_norm: bool = False,
) -> EpochResult:
    """Mean loss and accuracy are over every image seen, so a short last batch weighs less.

    ``on_step`` is called after every optimizer step with the running sums. ``frozen_norm``:
    batch-norm layers normalize with their running statistics and keep them (eval mode) while
    the rest trains.
    """
    model.train()
    if frozen_norm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    running = RunningMetrics(torch.zeros((), device=device),
                             torch.zeros((), device=device, dtype=torch.int64))
    start = time.perf_counter()
    for x, y in batches:
        with autocast(device, amp):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulate on the device: one host sync per epoch, not per batch.
        running.loss_sum += loss.detach() * len(y)
        running.correct += (logits.detach().argmax(1) == y).sum()
        running.seen += len(y)
        running.steps += 1
        running.last_loss = loss.detach()
        if on_step is not None:
            on_step(running)
    # Under torchrun, the sums over every rank's images: the metrics one process would report.
    loss_sum, correct, seen = sum_over_ranks(running.loss_sum, running.correct, running.seen)
    if seen == 0:  # e.g. streamed files that all turned out unusable
        raise DataError("no training image could be used this epoch (every file of every batch "
                        "failed to decode; the skipped files are listed above): fix or remove "
                        "them, or train on other data")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_value = loss_sum / seen
    if not torch.isfinite(torch.tensor(loss_value)):
        raise DescendError(
            "training diverged: the loss became NaN or infinite; lower --lr (the checkpoints of "
            "earlier epochs are kept)"
        )
    return EpochResult(loss_value, correct / seen, seconds, int(seen))


def loss_and_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over all images of ``batches``; under torchrun, over the
    images of every rank's ``batches`` (each rank's share of the split)."""
    logits, labels = predict_batches(model, batches, device, amp)
    if active():
        shard = ((F.cross_entropy(logits, labels, reduction="sum"),
                  (logits.argmax(1) == labels).sum()) if len(labels) else (0.0, 0))
        loss_sum, correct, n = sum_over_ranks(*shard, len(labels))
        return loss_sum / n, correct / n
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
