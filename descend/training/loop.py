"""One training epoch and one evaluation pass: the inner loops, read top to bottom."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from descend.errors import DataError, DescendError


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

    @property
    def loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    @property
    def acc(self) -> float:
        return self.correct.item() / max(self.seen, 1)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on CUDA (no loss scaling needed); a no-op elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    label_smoothing: float = 0.0,
    device: torch.device,
    amp: bool = False,
    on_step: Callable[[RunningMetrics], None] | None = None,
) -> EpochResult:
    """Mean loss and accuracy are over every image seen, so a short last batch weighs less.

    ``on_step`` is called after every optimizer step with the running sums.
    """
    model.train()
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
        if on_step is not None:
            on_step(running)
    if running.seen == 0:  # e.g. streamed files that all turned out unusable
        raise DataError("no training image could be used this epoch (every file of every batch "
                        "failed to decode; the skipped files are listed above): fix or remove "
                        "them, or train on other data")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_value = running.loss
    if not torch.isfinite(torch.tensor(loss_value)):
        raise DescendError(
            "training diverged: the loss became NaN or infinite; lower --lr (the checkpoints of "
            "earlier epochs are kept)"
        )
    return EpochResult(loss_value, running.acc, seconds, running.seen)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and labels for every batch, in eval mode."""
    model.eval()
    outs, labels = [], []
    for x, y in batches:
        with autocast(device, amp):
            outs.append(model(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(outs), torch.cat(labels)


def loss_and_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over all images of ``batches``."""
    logits, labels = predict_batches(model, batches, device, amp)
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
