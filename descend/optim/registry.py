"""Optimizers by name, so ``--optimizer NAME``, config files and the API say the same names.

Every entry is descend's own implementation (proven against torch.optim in tests/optim).
``momentum`` is the seed's EMA form v = beta v + (1 - beta) g; ``nesterov`` is the classic
undamped look-ahead v = beta v + g (torch's ``SGD(nesterov=True)``), the form every published
CIFAR-10 recipe states its learning rates in, so that those numbers carry over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD
from descend.registry import Registry

Builder = Callable[[Any, float, float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Builder] = Registry("optimizer")

# name -> builder(params, lr, momentum, weight_decay); `momentum` is beta1 for Adam(W).
OPTIMIZERS.register("sgd")(lambda p, lr, m, wd: SGD(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("momentum")(lambda p, lr, m, wd: Momentum(p, lr=lr, momentum=m,
                                                               weight_decay=wd))
OPTIMIZERS.register("nesterov")(lambda p, lr, m, wd: Nesterov(p, lr=lr, momentum=m,
                                                               dampening=0.0, weight_decay=wd))
OPTIMIZERS.register("adagrad")(lambda p, lr, m, wd: AdaGrad(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("rmsprop")(lambda p, lr, m, wd: RMSProp(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("adam")(lambda p, lr, m, wd: Adam(p, lr=lr, betas=(m, 0.999),
                                                       weight_decay=wd))
OPTIMIZERS.register("adamw")(lambda p, lr, m, wd: AdamW(p, lr=lr, betas=(m, 0.999),
                                                         weight_decay=wd))


def create_optimizer(
    name: str,
    params: Iterable[Any],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``create_optimizer("adam", model.parameters(), lr=1e-3)``."""
    return OPTIMIZERS.get(name)(params, lr, momentum, weight_decay)
