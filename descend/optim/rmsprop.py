"""RMSProp: AdaGrad with the sum of squared gradients replaced by their EMA (seed 2.4).

    s_t = beta s_{t-1} + (1 - beta) g_t^2,  theta_t = theta_{t-1} - eta / sqrt(s_t + eps) * g_t

The EMA forgets old gradients, so the step no longer shrinks towards zero as AdaGrad's does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import (
    DescendOptimizer,
    check_hyper,
    foreach_sqrt_with_eps,
    group_by_device_and_dtype,
    sqrt_with_eps,
    weight_decay_foreach,
    weight_decay_single,
)
from descend.optim.ema import ema_square_, foreach_ema_square_
from descend.optim.registry import OPTIMIZERS

__all__ = ["RMSProp"]


@OPTIMIZERS.register("rmsprop")
class RMSProp(DescendOptimizer):
    """RMSProp as the seed writes it, eps inside the root.

        s_0 = 0,  s_t = beta s_{t-1} + (1 - beta) g_t^2          (state ``square_avg``)
        theta_t = theta_{t-1} - eta g_t / sqrt(s_t + eps)     (eps_inside=True, the default)
        theta_t = theta_{t-1} - eta g_t / (sqrt(s_t) + eps)   (eps_inside=False)

    ``RMSProp(p, lr, beta=b, eps_inside=False)`` equals ``torch.optim.RMSprop(p, lr,
    alpha=b)`` (torch's default alpha is 0.99, the seed's beta 0.9). There is no momentum
    term, as in the seed, so OneCycleLR/CyclicLR need ``cycle_momentum=False`` (see
    `descend.optim.base.has_momentum`); Adam is RMSProp with momentum.

    Args:
        params: parameters or param groups.
        lr: eta (0.01, torch's default).
        beta: the EMA decay of g^2; 0.9 as in the seed. ``alpha`` is accepted as torch's name.
        eps: 1e-8, inside the root by default.
        eps_inside: where eps goes, see above.
        weight_decay: lambda; L2 unless ``decoupled_weight_decay``.
        foreach: multi-tensor kernels (default) or the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.
    """

    compare_lr = 1e-3  # steps of about lr per weight, whatever the gradient's scale
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 3e-2, "beale": 1e-2, "saddle": 1e-2, "quadratic": 1e-2}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        beta: float = 0.9,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        eps_inside: bool = True,
        alpha: float | None = None,
        decoupled_weight_decay: bool = False,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        name = type(self).__name__
        if alpha is not None:
            beta = alpha  # torch.optim.RMSprop's name for the same decay
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
            beta=check_hyper(name, "beta", beta, high=1.0),
            eps=check_hyper(name, "eps", eps),
            eps_inside=bool(eps_inside),
        )

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        square_avgs = self._state_tensors(params, "square_avg")  # s_0 = 0
        update = _multi_tensor_rmsprop if group["foreach"] else _single_tensor_rmsprop
        update(
            params,
            grads,
            square_avgs,
            lr=group["lr"],
            beta=group["beta"],
            eps=group["eps"],
            eps_inside=group["eps_inside"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
        )


def _single_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    *,
    lr: float,
    beta: float,
    eps: float,
    eps_inside: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for theta, g, s in zip(params, grads, square_avgs):
        g = weight_decay_single(theta, g, lr, weight_decay, decoupled)
        ema_square_(s, g, beta)  # s_t = beta s_{t-1} + (1 - beta) g_t^2
        denom = sqrt_with_eps(s, eps, eps_inside)  # sqrt(s_t + eps) or sqrt(s_t) + eps
        theta.addcdiv_(g, denom, value=-lr)  # theta_t = theta_{t-1} - eta g_t / denom


def _multi_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    *,
    lr: float,
    beta: float,
    eps: float,
    eps_inside: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for (thetas, gs, ss), _ in group_by_device_and_dtype([params, grads, square_avgs]):
        gs = weight_decay_foreach(thetas, gs, lr, weight_decay, decoupled)
        foreach_ema_square_(ss, gs, beta)
        denom = foreach_sqrt_with_eps(ss, eps, eps_inside)
        torch._foreach_addcdiv_(thetas, gs, denom, value=-lr)
