"""The exponentially weighted moving average (EMA), the one idea every optimizer here is built from.

Seed notation: v_1 = x_1 (the seed writes v_0 = x_0), v_t = beta v_{t-1} + (1 - beta) x_t.
With zero initialisation (v_0 = 0) the early values are biased towards 0; dividing by
1 - beta^t removes that bias, because the weights of x_1..x_t then sum to one.

Three layers, from the seed's lesson to the optimizers:

* `EMA`: a series smoother for numbers or tensors (loss curves, metrics).
* `ema_` / `ema_square_` and their `foreach_` twins: the in-place tensor updates that
  `Momentum` (EMA of g), `RMSProp` (EMA of g^2) and `Adam` (both, plus bias correction) use.
  Adam is literally ``ema_(m, g, beta1)`` + ``ema_square_(v, g, beta2)`` + `bias_correction`.
* `ModelEMA`: an EMA of a model's weights, evaluated in place of the raw weights
  (``--ema-decay``).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from descend.errors import ConfigError

__all__ = [
    "EMA",
    "ModelEMA",
    "bias_correction",
    "ema_",
    "ema_square_",
    "foreach_ema_",
    "foreach_ema_square_",
]

X = TypeVar("X", float, Tensor)


def _check_beta(beta: float, name: str = "beta") -> float:
    beta = float(beta)
    if not 0.0 <= beta < 1.0 or math.isnan(beta):
        raise ConfigError(f"invalid {name} = {beta}: an EMA decay must lie in [0, 1)")
    return beta


def bias_correction(beta: float, t: int) -> float:
    """1 - beta^t: the total weight a zero-initialised EMA has given to x_1..x_t."""
    return 1.0 - beta**t


def ema_(v: Tensor, x: Tensor, beta: float) -> Tensor:
    """In place: v <- beta v + (1 - beta) x.

    Written as ``lerp`` (v + (1 - beta)(x - v)), one pass over memory instead of two; it is
    also the form torch.optim.Adam uses for its first moment.
    """
    return v.lerp_(x, 1.0 - beta)


def ema_square_(s: Tensor, g: Tensor, beta: float) -> Tensor:
    """In place: s <- beta s + (1 - beta) g^2, without materialising g^2."""
    return s.mul_(beta).addcmul_(g, g, value=1.0 - beta)


def foreach_ema_(vs: list[Tensor], xs: list[Tensor], beta: float) -> None:
    """`ema_` on lists of tensors (same device and dtype), one multi-tensor kernel."""
    torch._foreach_lerp_(vs, xs, 1.0 - beta)


def foreach_ema_square_(ss: list[Tensor], gs: list[Tensor], beta: float) -> None:
    """`ema_square_` on lists of tensors (same device and dtype)."""
    torch._foreach_mul_(ss, beta)
    torch._foreach_addcmul_(ss, gs, gs, value=1.0 - beta)


class EMA(Generic[X]):
    """EMA of a series of numbers or tensors.

    Seed form (``zero_init=False``): v_1 = x_1, v_t = beta v_{t-1} + (1 - beta) x_t.
    ``zero_init=True``: v_0 = 0, same recursion, and `value` is the bias-corrected
    v_t / (1 - beta^t). Both give x_1 at t = 1 and weight x_{t-k} by about beta^k after that.

    >>> smooth = EMA(0.9)
    >>> [round(smooth.update(x), 3) for x in (1.0, 2.0, 3.0)]
    [1.0, 1.1, 1.29]
    """

    def __init__(self, beta: float = 0.9, zero_init: bool = False) -> None:
        self.beta = _check_beta(beta)
        self.zero_init = zero_init
        self.t = 0
        self._v: X | None = None

    def update(self, x: X) -> X:
        """Feed x_t and return the new (bias-corrected, when zero-initialised) value."""
        self.t += 1
        if isinstance(x, Tensor):
            x = x.detach()
        if self._v is None:
            # Seed convention v_1 = x_1; zero init gives (1 - beta) x_1 before correction.
            self._v = x * (1.0 - self.beta) if self.zero_init else _copy(x)
        else:
            self._v = self.beta * self._v + (1.0 - self.beta) * x
        return self.value

    @property
    def value(self) -> X:
        """The current average; raises before the first `update`."""
        if self._v is None:
            raise ValueError("EMA has no value before the first update()")
        if self.zero_init:
            return self._v / bias_correction(self.beta, self.t)
        return self._v

    def series(self, xs: list[X]) -> list[X]:
        """The EMA of a whole series (continuing from the current state)."""
        return [self.update(x) for x in xs]


def _copy(x: X) -> X:
    return x.clone() if isinstance(x, Tensor) else x


class ModelEMA:
    """An EMA of a model's floating-point parameters and buffers.

    w_ema <- decay w_ema + (1 - decay) w after every optimizer step, starting from a copy of
    the model (v_1 = x_1, the seed's convention). Integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied, not averaged. The averages live in a model of their
    own, ``module`` (a frozen copy in eval mode, as timm's ModelEmaV2 and torch's
    AveragedModel keep them): evaluate it directly, or swap its weights into the live model
    with `applied_to` / make them permanent with `copy_to`.

    >>> ema = ModelEMA(model, decay=0.999)      # doctest: +SKIP
    >>> ...; optimizer.step(); ema.update(model)  # doctest: +SKIP
    >>> evaluate(ema.module)                    # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = _check_beta(decay, "decay")
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None
        # The module's own tensors: updating them updates the module.
        self.shadow: dict[str, Tensor] = {
            name: t.detach() for name, t in _model_tensors(self.module).items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average."""
        current = _model_tensors(model)
        if current.keys() != self.shadow.keys():
            raise ValueError("ModelEMA.update: the model's parameters and buffers changed names")
        floats: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for name, avg in self.shadow.items():
            now = current[name].detach()
            if avg.is_floating_point() or avg.is_complex():
                vs, xs = floats.setdefault((avg.device, avg.dtype), ([], []))
                vs.append(avg)
                xs.append(now)
            else:
                avg.copy_(now)
        for vs, xs in floats.values():
            foreach_ema_(vs, xs, self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights and buffers with the averages."""
        current = _model_tensors(model)
        for name, avg in self.shadow.items():
            current[name].copy_(avg)

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Evaluate with the averaged weights inside the block; the live ones come back after."""
        current = _model_tensors(model)
        backup = {name: t.detach().clone() for name, t in current.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, t in current.items():
                    t.copy_(backup[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        if shadow.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - shadow.keys())
            extra = sorted(shadow.keys() - self.shadow.keys())
            raise ValueError(f"ModelEMA state does not fit: missing {missing}, unexpected {extra}")
        self.decay = _check_beta(state["decay"], "decay")
        self.num_updates = int(state["num_updates"])
        with torch.no_grad():
            for name, avg in self.shadow.items():
                avg.copy_(shadow[name])


def _model_tensors(model: nn.Module) -> dict[str, Tensor]:
    # state_dict(keep_vars=True) gives the live tensors, parameters and buffers alike, under
    # the names a checkpoint uses.
    return dict(model.state_dict(keep_vars=True))
