"""Adam = Momentum's EMA of g + RMSProp's EMA of g^2 + bias correction (seed 2.5); and AdamW.

    m_t = beta1 m_{t-1} + (1 - beta1) g_t          Momentum's EMA (``ema_``), zero-initialised
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2        RMSProp's EMA (``ema_square_``)
    m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)       bias correction
    theta_t = theta_{t-1} - eta m_hat / (sqrt(v_hat) + eps)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from descend.optim.base import (
    DescendOptimizer,
    check_hyper,
    group_by_device_and_dtype,
    weight_decay_foreach,
    weight_decay_single,
)
from descend.optim.ema import (
    bias_correction,
    ema_,
    ema_square_,
    foreach_ema_,
    foreach_ema_square_,
)
from descend.optim.registry import OPTIMIZERS

__all__ = ["Adam", "AdamW"]


@OPTIMIZERS.register("adam")
class Adam(DescendOptimizer):
    """Adam, the seed's formulas; equals ``torch.optim.Adam`` bit for bit (same operations).

    Both moments start at zero, which biases them towards 0 early on; dividing by
    1 - beta^t (the weight the EMA has given to g_1..g_t) removes that bias, so the first
    step is eta g_1 / (|g_1| + eps), about eta in every coordinate.

    Args:
        params: parameters or param groups.
        lr: eta; 1e-3.
        betas: (beta1, beta2) = (0.9, 0.999). Stored under ``betas``, where OneCycleLR and
            CyclicLR cycle beta1.
        eps: 1e-8, outside the root as in the seed and torch.
        weight_decay: lambda. L2 (g_t <- g_t + lambda theta_{t-1}, then through the moments)
            unless ``decoupled_weight_decay``: theta <- (1 - eta lambda) theta before the step,
            which is AdamW.
        foreach: multi-tensor kernels (default) or the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.

    State per parameter: ``step`` (t, an int), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    compare_lr = 1e-3  # steps of about lr per weight, whatever the gradient's scale
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 0.1, "beale": 0.1, "saddle": 1e-2, "quadratic": 0.1}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        name = type(self).__name__
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
            betas=(
                check_hyper(name, "betas[0] (beta1)", betas[0], high=1.0),
                check_hyper(name, "betas[1] (beta2)", betas[1], high=1.0),
            ),
            eps=check_hyper(name, "eps", eps),
        )

    @classmethod
    def build(
        cls, params: Iterable[Any], lr: float, momentum: float, weight_decay: float
    ) -> DescendOptimizer:
        """``momentum`` is beta1, the decay of the first moment (Momentum's EMA); beta2 0.999."""
        return cls(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] = int(state["step"]) + 1  # t counts this parameter's own steps
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        update = _multi_tensor_adam if group["foreach"] else _single_tensor_adam
        update(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
        )


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay: theta <- (1 - eta lambda) theta, then the Adam step.

    The decay no longer passes through v_hat, so every weight shrinks at the same rate
    whatever its gradient history. Equals ``torch.optim.AdamW`` bit for bit; lambda defaults
    to 0.01 as there.
    """

    compare_lr = 1e-3  # Adam's; the decay does not change the step's scale
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 0.1, "beale": 0.1, "saddle": 1e-2, "quadratic": 0.1}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            decoupled_weight_decay=True,
            foreach=foreach,
            check_finite=check_finite,
        )


def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for theta, g, m, v, t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        g = weight_decay_single(theta, g, lr, weight_decay, decoupled)
        ema_(m, g, beta1)  # m_t = beta1 m_{t-1} + (1 - beta1) g_t
        ema_square_(v, g, beta2)  # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        # eta m_hat / (sqrt(v_hat) + eps) with the corrections folded into two scalars, as
        # torch does, so that no corrected copy of m or v is ever made.
        step_size = lr / bias_correction(beta1, t)
        denom = (v.sqrt() / bias_correction(beta2, t) ** 0.5).add_(eps)  # sqrt(v_hat) + eps
        theta.addcdiv_(m, denom, value=-step_size)


def _multi_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for (thetas, gs, ms, vs), indices in group_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs]
    ):
        gs = weight_decay_foreach(thetas, gs, lr, weight_decay, decoupled)
        foreach_ema_(ms, gs, beta1)
        foreach_ema_square_(vs, gs, beta2)
        # Parameters may have taken different numbers of steps (grads that were None), so
        # the corrections are per tensor.
        step_sizes = [-(lr / bias_correction(beta1, steps[i])) for i in indices]
        bc2_sqrt = [bias_correction(beta2, steps[i]) ** 0.5 for i in indices]
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(thetas, ms, denom, step_sizes)
