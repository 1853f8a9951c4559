"""What every descend optimizer shares: settings, gathering gradients, checks, weight decay,
the eps-and-root denominator, grouping.

Each optimizer module (sgd.py, momentum.py, ...) holds its class and two update functions
side by side, as torch.optim does: ``_single_tensor_*`` (a loop that reads like the formula,
the reference) and ``_multi_tensor_*`` (the same arithmetic with ``torch._foreach_*`` kernels
over all tensors of one device and dtype at once, the fast default). Both apply the same
tensor operations in the same order, so on the CPU they agree to the last bit. The helpers
here come in the same pairs: ``weight_decay_single`` / ``weight_decay_foreach``,
``sqrt_with_eps`` / ``foreach_sqrt_with_eps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from descend.errors import ConfigError

__all__ = [
    "DescendOptimizer",
    "check_hyper",
    "foreach_sqrt_with_eps",
    "group_by_device_and_dtype",
    "has_momentum",
    "sqrt_with_eps",
    "weight_decay_foreach",
    "weight_decay_single",
]


def check_hyper(
    optimizer: str,
    name: str,
    value: float,
    *,
    low: float = 0.0,
    high: float | None = None,
    high_inclusive: bool = False,
) -> float:
    """Return ``float(value)`` or raise `ConfigError` (a ValueError) naming the bad setting."""
    value = float(value)
    ok = not math.isnan(value) and value >= low
    if high is not None:
        ok = ok and (value <= high if high_inclusive else value < high)
    if not ok:
        if high is None:
            allowed = f">= {low:g}"
        else:
            allowed = f"in [{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ConfigError(f"{optimizer}: invalid {name} = {value!r}; it must be {allowed}")
    return value


def has_momentum(optimizer: Optimizer) -> bool:
    """Whether `torch.optim.lr_scheduler.OneCycleLR` / `CyclicLR` can cycle a momentum.

    Those schedulers look for ``momentum`` or ``betas`` in ``optimizer.defaults``: `Momentum`,
    `Nesterov`, `Adam` and `AdamW` have one; `SGD`, `AdaGrad` and `RMSProp` have none, so use
    ``cycle_momentum=False`` with them.
    """
    return "momentum" in optimizer.defaults or "betas" in optimizer.defaults


def group_by_device_and_dtype(
    tensorlists: list[list[Tensor]],
) -> list[tuple[list[list[Tensor]], list[int]]]:
    """Split parallel tensor lists into runs of one device and dtype, as foreach kernels need.

    Returns ``[(lists, indices), ...]``; ``indices`` map back into the original lists (for
    per-parameter Python values such as step counts).
    """
    # torch's grouping is a C++ routine; it is what torch.optim's foreach paths use.
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        tensorlists, with_indices=True)  # type: ignore[arg-type]  # it takes None entries too
    return [(lists, indices) for lists, indices in grouped.values()]  # type: ignore[misc]


def weight_decay_single(
    param: Tensor, grad: Tensor, lr: float, weight_decay: float, decoupled: bool
) -> Tensor:
    """L2: g <- g + lambda theta (a new tensor; p.grad is untouched).

    Decoupled: theta <- (1 - eta lambda) theta, and g is returned as is.
    """
    if weight_decay == 0:
        return grad
    if decoupled:
        param.mul_(1.0 - lr * weight_decay)
        return grad
    return grad.add(param, alpha=weight_decay)


def weight_decay_foreach(
    params: list[Tensor], grads: list[Tensor], lr: float, weight_decay: float, decoupled: bool
) -> list[Tensor]:
    """`weight_decay_single` on lists."""
    if weight_decay == 0:
        return grads
    if decoupled:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        return grads
    return list(torch._foreach_add(grads, params, alpha=weight_decay))


def sqrt_with_eps(s: Tensor, eps: float, eps_inside: bool) -> Tensor:
    """The denominator of AdaGrad and RMSProp, a new tensor: sqrt(s + eps) or sqrt(s) + eps.

    ``eps_inside=True`` is the seed's placement (optax's ``eps_in_sqrt``), ``False`` is
    torch.optim's; they differ only where s is about eps or below.
    """
    if eps_inside:
        return s.add(eps).sqrt_()
    return s.sqrt().add_(eps)


def foreach_sqrt_with_eps(ss: list[Tensor], eps: float, eps_inside: bool) -> list[Tensor]:
    """`sqrt_with_eps` on lists (same device and dtype)."""
    if eps_inside:
        denom = torch._foreach_add(ss, eps)
        torch._foreach_sqrt_(denom)
    else:
        denom = torch._foreach_sqrt(ss)
        torch._foreach_add_(denom, eps)
    return list(denom)


def _finite_screen(g: Tensor) -> Tensor:
    # Half-precision sums would overflow at 65504; accumulate those in float32.
    if g.dtype in (torch.float16, torch.bfloat16):
        return g.sum(dtype=torch.float32)
    return g.sum()


class DescendOptimizer(Optimizer):
    """Base class: `step` gathers (param, grad) pairs per group and calls `_update`.

    Shared behaviour, documented once here:

    * Parameters whose ``.grad`` is None are skipped (no state is created, no step counted).
    * Sparse gradients raise RuntimeError naming the parameter; these optimizers are dense.
    * Non-finite gradients: with ``check_finite=False`` (the default, and torch.optim's
      behaviour) a NaN or inf gradient flows into the parameters and the optimizer state, as in
      torch.optim; the training loop is expected to watch the loss. With ``check_finite=True``
      the step first checks every gradient (one extra read of the gradients and one device
      sync; see B1 for the cost) and raises FloatingPointError naming the parameter *before
      anything is modified*, so the model and optimizer state stay as they were.
    * Parameters passed as ``model.named_parameters()`` are named in error messages.

    A subclass passes its own (checked) settings to ``__init__`` beside the shared ones, and
    says how `create_optimizer` builds it (`build`), with which lr ``descend optim compare``
    trains it (`compare_lr`) and ``descend optim paths`` draws it (`path_lrs`); registering it
    by name is ``@OPTIMIZERS.register("name")`` above the class (see `descend.optim.registry`).
    """

    #: A constant learning rate that suits this optimizer on small image models, where
    #: ``descend optim compare`` starts; every registered optimizer sets its own.
    compare_lr: ClassVar[float]
    #: The lr ``descend optim paths`` draws it with on each test surface (rosenbrock, beale,
    #: saddle, quadratic: `descend.experiments.paths`). Chosen from a sweep over 1e-4..1 (500
    #: steps) so that each optimizer shows its character: the largest lr that stays stable for
    #: the plain gradient methods (SGD still zig-zags on the quadratic at 0.035, close to its
    #: limit 2/50), and about the best one for the adaptive methods, whose steps are about lr
    #: in size. Momentum's EMA form diverges on Rosenbrock and Beale above 3e-3: its overshoot
    #: reaches the steep walls.
    path_lrs: ClassVar[dict[str, float]]

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float,
        *,
        decoupled_weight_decay: bool,
        foreach: bool,
        check_finite: bool,
        **own: Any,
    ) -> None:
        """Check the shared settings and store them with the subclass's ``own`` ones."""
        name = type(self).__name__
        defaults = dict(
            lr=check_hyper(name, "lr", lr),
            **own,
            weight_decay=check_hyper(name, "weight_decay", weight_decay),
            decoupled_weight_decay=decoupled_weight_decay,
            foreach=foreach,
            check_finite=check_finite,
        )
        super().__init__(params, defaults)

    @classmethod
    def build(
        cls, params: Iterable[Any], lr: float, momentum: float, weight_decay: float
    ) -> DescendOptimizer:
        """The optimizer from the three settings every run has (`create_optimizer`'s form).

        This default ignores ``momentum``; an optimizer that has one overrides `build`.
        """
        # Each subclass gives its own keyword settings defaults (the base's are required).
        return cls(params, lr=lr, weight_decay=weight_decay)  # type: ignore[call-arg]

    @classmethod
    def params_of(cls, model: nn.Module) -> Any:
        """What `create_optimizer` passes this optimizer for a whole model: its parameters,
        or the parameter groups an optimizer such as `Muon` wants (which layer takes what)."""
        return model.parameters()

    def _label(self, group_index: int, param: Tensor) -> str:
        group = self.param_groups[group_index]
        index = next(i for i, p in enumerate(group["params"]) if p is param)
        names = group.get("param_names")
        if names:
            return f"parameter {names[index]!r}"
        return f"parameter {index} of param group {group_index} (shape {list(param.shape)})"

    def _gather(self, group_index: int) -> tuple[list[Tensor], list[Tensor]]:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        for p in self.param_groups[group_index]["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"({self._label(group_index, p)}); use dense gradients "
                    "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam"
                )
            params.append(p)
            grads.append(p.grad)
        return params, grads

    def _check_finite(self, group_index: int, params: list[Tensor], grads: list[Tensor]) -> None:
        # Fast screen: a sum is finite only if every term is (an inf or NaN term makes it
        # inf or NaN), and a sum is one vectorised read, cheaper than any norm. A non-finite
        # sum can also be an overflow of large finite values, so flagged tensors get the
        # exact element-wise check before anything is reported.
        by_device: dict[torch.device, list[int]] = {}
        for i, g in enumerate(grads):
            by_device.setdefault(g.device, []).append(i)
        for indices in by_device.values():
            sums = torch.stack([_finite_screen(grads[i]) for i in indices])
            flagged = (~torch.isfinite(sums)).nonzero().flatten().tolist()
            for k in flagged:
                i = indices[k]
                if not bool(torch.isfinite(grads[i]).all()):
                    raise FloatingPointError(
                        f"{type(self).__name__}: non-finite gradient (NaN or inf) in "
                        f"{self._label(group_index, params[i])}; no parameter was changed. "
                        "Lower the learning rate, clip gradients, or check the data and loss."
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        gathered = [self._gather(i) for i in range(len(self.param_groups))]
        # All checks before any update, so a failed step leaves everything untouched.
        for i, (params, grads) in enumerate(gathered):
            if self.param_groups[i]["check_finite"] and params:
                self._check_finite(i, params, grads)
        for group, (params, grads) in zip(self.param_groups, gathered):
            if params:
                self._update(group, params, grads)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError

    def _state_tensors(self, params: list[Tensor], key: str, fill: float = 0.0) -> list[Tensor]:
        """``self.state[p][key]`` for every parameter, made full of ``fill`` on its first step."""
        tensors = []
        for p in params:
            state = self.state[p]
            if key not in state:
                state[key] = torch.full_like(p, fill, memory_format=torch.preserve_format)
            tensors.append(state[key])
        return tensors
