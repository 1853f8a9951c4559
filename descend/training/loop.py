"""One training epoch and one evaluation pass: the inner loops, read top to bottom."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from descend.errors import DescendError


@dataclass
class EpochResult:
    loss: float
    acc: float
    seconds: float
    images: int


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
    after_step: Callable[[], None] | None = None,
    progress: tqdm | None = None,
) -> EpochResult:
    """Mean loss and accuracy are over every image seen, so a short last batch weighs less."""
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, start = 0, time.perf_counter()
    for x, y in batches:
        with autocast(device, amp):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        # Accumulate on the device: one host sync per epoch, not per batch.
        total_loss += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(1)
            if progress.n % 10 == 0:
                progress.set_postfix(loss=f"{total_loss.item() / seen:.3f}",
                                     acc=f"{correct.item() / seen:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    loss_value = total_loss.item() / max(seen, 1)
    if not torch.isfinite(torch.tensor(loss_value)):
        raise DescendError(
            "training diverged: the loss became NaN or infinite; lower --lr (the checkpoints of "
            "earlier epochs are kept)"
        )
    return EpochResult(loss_value, correct.item() / max(seen, 1), seconds, seen)


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


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over all images."""
    logits, labels = predict_batches(model, batches, device, amp)
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
