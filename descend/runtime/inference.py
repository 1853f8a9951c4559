"""Batched inference: a model's logits over batches, in eval mode, as every command that
measures a model (training's validation, eval, the audit) computes them."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from descend.runtime.precision import autocast


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
    if not outs:  # no batches (a rank's empty share of a tiny split, under torchrun)
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(outs), torch.cat(labels)
