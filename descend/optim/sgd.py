"""SGD, the seed's plain gradient descent: theta_t = theta_{t-1} - eta g_t."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import (
    DescendOptimizer,
    group_by_device_and_dtype,
    weight_decay_foreach,
    weight_decay_single,
)
from descend.optim.registry import OPTIMIZERS

__all__ = ["SGD"]


@OPTIMIZERS.register("sgd")
class SGD(DescendOptimizer):
    """Plain (stochastic) gradient descent: theta_t = theta_{t-1} - eta g_t.

    Equals ``torch.optim.SGD(params, lr, weight_decay=...)`` bit for bit.

    Args:
        params: parameters or param groups (``model.named_parameters()`` names them in errors).
        lr: eta, the learning rate. 0.01 is the seed's value.
        weight_decay: lambda. L2 by default: g_t <- g_t + lambda theta_{t-1}.
        decoupled_weight_decay: instead shrink theta_{t-1} by (1 - eta lambda) before the step
            (for plain SGD the two differ only by rounding; kept for symmetry with AdamW).
        foreach: multi-tensor kernels (default) or the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.
    """

    compare_lr = 0.05  # steps scale with the gradient: the largest that stays stable
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 1e-3, "beale": 3e-2, "saddle": 1e-2, "quadratic": 0.035}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
        )

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        update = _multi_tensor_sgd if group["foreach"] else _single_tensor_sgd
        update(
            params,
            grads,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
        )


def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for theta, g in zip(params, grads):
        g = weight_decay_single(theta, g, lr, weight_decay, decoupled)
        theta.add_(g, alpha=-lr)  # theta_t = theta_{t-1} - eta g_t


def _multi_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for (thetas, gs), _ in group_by_device_and_dtype([params, grads]):
        gs = weight_decay_foreach(thetas, gs, lr, weight_decay, decoupled)
        torch._foreach_add_(thetas, gs, alpha=-lr)
