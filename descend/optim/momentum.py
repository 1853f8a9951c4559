"""Momentum: gradient descent along the EMA of the gradients (seed 2.2), and its Nesterov form.

    v_1 = g_1,  v_t = beta v_{t-1} + (1 - beta) g_t,  theta_t = theta_{t-1} - eta v_t

The EMA smooths the zig-zag of noisy gradients and keeps moving along directions where they
agree. torch.optim.SGD writes the same recursion as v_t = mu v_{t-1} + (1 - tau) g_t with a
``dampening`` tau; the seed's EMA is tau = mu = beta.
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
from descend.optim.ema import ema_, foreach_ema_
from descend.optim.registry import OPTIMIZERS

__all__ = ["Momentum", "Nesterov"]


@OPTIMIZERS.register("momentum")
class Momentum(DescendOptimizer):
    r"""SGD with momentum, by default exactly the seed's EMA form.

    With tau the dampening (default ``None``: tau = beta, the seed's EMA)::

        v_1 = g_1                                  (the seed's EMA convention; torch's too)
        v_t = beta v_{t-1} + (1 - tau) g_t
        d_t = v_t                                  (classic momentum)
        d_t = beta v_t + (1 - tau) g_t             (nesterov=True)
        theta_t = theta_{t-1} - eta d_t

    Nesterov evaluates the momentum step once more with the current gradient: d_t is the
    value the buffer would take next if g_t came again, a look-ahead. With the default
    tau = beta it is the EMA form, d_t = beta v_t + (1 - beta) g_t; with ``dampening=0`` it is
    torch's d_t = g_t + beta v_t.

    Equalities (trajectories agree, tested on MNIST):

    * ``Momentum(p, lr, momentum=b)`` == ``torch.optim.SGD(p, lr, momentum=b, dampening=b)``
      (to float rounding: the EMA is one fused ``lerp``, torch does a multiply and an add).
    * ``Momentum(p, lr, momentum=b, dampening=0)`` == ``torch.optim.SGD(p, lr, momentum=b)``,
      bit for bit.
    * ``Momentum(p, lr, momentum=b, dampening=0, nesterov=True)`` ==
      ``torch.optim.SGD(p, lr, momentum=b, nesterov=True)`` (to float rounding: we apply
      d_t as two in-place adds, torch forms g_t + beta v_t inside p.grad, which we never
      write).
    * The EMA form with lr eta behaves like the undamped form with lr eta (1 - beta) (so the
      seed's 0.01 matches torch's 0.001 at beta = 0.9), apart from the first steps: since
      both start at v_1 = g_1, v_t^EMA = (1 - beta) v_t^torch + beta^t g_1.

    Args:
        params: parameters or param groups.
        lr: eta.
        momentum: beta, the EMA decay; 0.9 as in the seed. Stored under ``momentum`` so that
            OneCycleLR / CyclicLR can cycle it.
        dampening: tau; None follows beta (also when a scheduler cycles beta).
        nesterov: use the look-ahead direction above.
        weight_decay: lambda; L2 (g_t <- g_t + lambda theta_{t-1}) unless
            ``decoupled_weight_decay`` (theta <- (1 - eta lambda) theta before the step).
        foreach: multi-tensor kernels (default) or the per-tensor reference loop.
        check_finite: raise FloatingPointError on a NaN/inf gradient before changing anything.
    """

    compare_lr = 0.1  # the EMA form: like lr 0.01 in torch's undamped form at beta = 0.9
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 3e-3, "beale": 3e-3, "saddle": 1e-2, "quadratic": 0.035}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        momentum: float = 0.9,
        dampening: float | None = None,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        foreach: bool = True,
        check_finite: bool = False,
    ) -> None:
        name = type(self).__name__
        if dampening is not None:
            dampening = check_hyper(name, "dampening", dampening, high=1.0, high_inclusive=True)
        super().__init__(
            params,
            lr,
            weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
            momentum=check_hyper(name, "momentum", momentum, high=1.0),
            dampening=dampening,
            nesterov=bool(nesterov),
        )

    @classmethod
    def build(
        cls, params: Iterable[Any], lr: float, momentum: float, weight_decay: float
    ) -> DescendOptimizer:
        """The seed's EMA form (dampening follows beta), with ``momentum`` as beta."""
        return cls(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        bufs: list[Tensor | None] = [self.state[p].get("momentum_buffer") for p in params]
        beta = group["momentum"]
        tau = beta if group["dampening"] is None else group["dampening"]
        update = _multi_tensor_momentum if group["foreach"] else _single_tensor_momentum
        update(
            params,
            grads,
            bufs,
            lr=group["lr"],
            beta=beta,
            tau=tau,
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
            decoupled=group["decoupled_weight_decay"],
        )
        for p, v in zip(params, bufs):
            self.state[p]["momentum_buffer"] = v


@OPTIMIZERS.register("nesterov")
class Nesterov(Momentum):
    """`Momentum` with ``nesterov=True``: d_t = beta v_t + (1 - tau) g_t (see `Momentum`)."""

    compare_lr = 0.02  # built undamped (see `build`): 1 / (1 - beta) times the EMA form's step
    # `descend optim paths` (experiments/paths.py): one lr per test surface
    path_lrs = {"rosenbrock": 3e-3, "beale": 3e-3, "saddle": 1e-2, "quadratic": 0.035}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        momentum: float = 0.9,
        dampening: float | None = None,
        weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, lr, momentum, dampening, True, weight_decay, **kwargs)

    @classmethod
    def build(
        cls, params: Iterable[Any], lr: float, momentum: float, weight_decay: float
    ) -> DescendOptimizer:
        """Undamped, d_t = g_t + beta v_t: torch's ``SGD(nesterov=True)``, unlike the class
        default (tau = beta), so that the learning rates of published recipes carry over."""
        return cls(params, lr=lr, momentum=momentum, dampening=0.0, weight_decay=weight_decay)


def _accumulate_(v: Tensor, g: Tensor, beta: float, tau: float) -> None:
    """v <- beta v + (1 - tau) g."""
    if tau == beta:
        ema_(v, g, beta)  # the seed's EMA, one fused pass
    else:
        v.mul_(beta).add_(g, alpha=1.0 - tau)  # torch's dampened form, e.g. tau = 0


def _single_tensor_momentum(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    beta: float,
    tau: float,
    nesterov: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for i, (theta, g) in enumerate(zip(params, grads)):
        g = weight_decay_single(theta, g, lr, weight_decay, decoupled)
        v = bufs[i]
        if v is None:
            v = bufs[i] = g.clone()  # v_1 = g_1
        else:
            _accumulate_(v, g, beta, tau)  # v_t = beta v_{t-1} + (1 - tau) g_t
        if nesterov:
            # theta_t = theta_{t-1} - eta (beta v_t + (1 - tau) g_t), as two in-place adds:
            # the same memory traffic as forming d_t, without allocating it.
            theta.add_(g, alpha=-lr * (1.0 - tau))
            theta.add_(v, alpha=-lr * beta)
        else:
            theta.add_(v, alpha=-lr)  # theta_t = theta_{t-1} - eta v_t


def _multi_tensor_momentum(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor | None],
    *,
    lr: float,
    beta: float,
    tau: float,
    nesterov: bool,
    weight_decay: float,
    decoupled: bool,
) -> None:
    for (thetas, gs), indices in group_by_device_and_dtype([params, grads]):
        gs = weight_decay_foreach(thetas, gs, lr, weight_decay, decoupled)
        if all(bufs[i] is not None for i in indices):
            vs: list[Tensor] = [bufs[i] for i in indices]  # type: ignore[misc]
            if tau == beta:
                foreach_ema_(vs, gs, beta)
            else:
                torch._foreach_mul_(vs, beta)
                torch._foreach_add_(vs, gs, alpha=1.0 - tau)
        else:
            # First step of some parameters (v_1 = g_1): a per-tensor pass, once.
            vs = []
            for i, g in zip(indices, gs):
                v = bufs[i]
                if v is None:
                    v = bufs[i] = g.clone()
                else:
                    _accumulate_(v, g, beta, tau)
                vs.append(v)
        if nesterov:
            # Two in-place adds instead of a new d_t tensor: allocating a parameter-sized
            # buffer every step made this 1.7x slower than torch on CPU (page faults).
            torch._foreach_add_(thetas, gs, alpha=-lr * (1.0 - tau))
            torch._foreach_add_(thetas, vs, alpha=-lr * beta)
        else:
            torch._foreach_add_(thetas, vs, alpha=-lr)
