"""AdaGrad: a per-coordinate step that shrinks with the sum of the squared gradients (seed 2.3).

    G_t = G_{t-1} + g_t^2,  theta_t = theta_{t-1} - eta / sqrt(G_t + eps) * g_t

Coordinates with large past gradients take small steps, rare ones large steps. G only grows,
so the step keeps shrinking: RMSProp replaces the sum by an EMA.
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
from descend.optim.registry import OPTIMIZERS

__all__ = ["AdaGrad"]


@OPTIMIZERS.register("adagrad")
class AdaGrad(DescendOptimizer):
    """AdaGrad as the seed writes it, eps inside the root.

        G_t = G_{t-1} + g_t^2                   (state ``sum``, G_0 = initial_accumulator_value)
        theta_t = theta_{t-1} - eta g_t / sqrt(G_t + eps)      (eps_inside=True, the default)
        theta_t = theta_{t-1} - eta g_t / (sqrt(G_t) + eps)    (eps_inside=False)

    ``eps_inside=False`` is torch.optim.Adagrad's placement: ``AdaGrad(p, lr, eps=1e-10,
    eps_inside=False)`` equals ``torch.optim.Adagrad(p, lr)`` (whose eps defaults to 1e-10 and
    whose lr_decay we leave out). The placement matters only where G_t is about eps or
    below: inside the root eps = 1e-8 acts like a floor of 1e-4 on the gradient scale, so
    coordinates that have seen almost no gradient take steps eta g / 1e-4 instead of about
    eta sign(g).

    Args:
        params: parameters or param groups.
        lr: eta (0.01, torch's default; AdaGrad's effective step decays by itself).
        eps: added to G_t inside the root (or to sqrt(G_t), see above); 1e-8 as in the seed.
        eps_inside: where eps goes, see above.
        initial_accumulator_value: G_0.
        weight_decay: lambda; L2 unless ``decoupled_weight_decay``.
        foreach: multi-tensor kernels (default) or the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.
    """

    compare_lr = 0.01  # torch's default; the effective step decays by itself
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 1.0, "beale": 1.0, "saddle": 0.1, "quadratic": 1.0}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        eps_inside: bool = True,
        initial_accumulator_value: float = 0.0,
        decoupled_weight_decay: bool = False,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        name = type(self).__name__
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
            eps=check_hyper(name, "eps", eps),
            eps_inside=bool(eps_inside),
            initial_accumulator_value=check_hyper(
                name, "initial_accumulator_value", initial_accumulator_value
            ),
        )

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        sums = self._state_tensors(params, "sum", fill=group["initial_accumulator_value"])
        update = _multi_tensor_adagrad if group["foreach"] else _single_tensor_adagrad
        update(
            params,
            grads,
            sums,
            lr=group["lr"],
            eps=group["eps"],
            eps_inside=group["eps_inside"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
        )


def _single_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    *,
    lr: float,
    eps: float,
    eps_inside: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for theta, g, G in zip(params, grads, sums):
        g = weight_decay_single(theta, g, lr, weight_decay, decoupled)
        G.addcmul_(g, g)  # G_t = G_{t-1} + g_t^2
        denom = sqrt_with_eps(G, eps, eps_inside)  # sqrt(G_t + eps) or sqrt(G_t) + eps
        theta.addcdiv_(g, denom, value=-lr)  # theta_t = theta_{t-1} - eta g_t / denom


def _multi_tensor_adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    *,
    lr: float,
    eps: float,
    eps_inside: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for (thetas, gs, Gs), _ in group_by_device_and_dtype([params, grads, sums]):
        gs = weight_decay_foreach(thetas, gs, lr, weight_decay, decoupled)
        torch._foreach_addcmul_(Gs, gs, gs)
        denom = foreach_sqrt_with_eps(Gs, eps, eps_inside)
        torch._foreach_addcdiv_(thetas, gs, denom, value=-lr)
