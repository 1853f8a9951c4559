"""Optimizers by name, so ``--optimizer NAME``, config files and the API say the same names.

Each entry builds an optimizer from the parameters and the run's `TrainConfig` values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from descend.registry import Registry

Builder = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")


def create_optimizer(
    name: str,
    params: Iterable[Any],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("momentum")
def _momentum(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    # The seed's EMA form v = b v + (1 - b) g is torch's SGD with dampening = momentum.
    return torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=momentum,
                           weight_decay=weight_decay)


@OPTIMIZERS.register("nesterov")
def _nesterov(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True,
                           weight_decay=weight_decay)


@OPTIMIZERS.register("adagrad")
def _adagrad(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=0.9, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
