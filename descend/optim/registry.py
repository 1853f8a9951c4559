"""Optimizers by name, so ``--optimizer NAME``, config files and the API say the same names.

Each optimizer module registers its own class, ``@OPTIMIZERS.register("adam")`` above
``class Adam``, and importing `descend.optim` imports every such module, so the registry is
full whenever the package is. Every entry is descend's own implementation (proven against
torch.optim in tests/optim). ``momentum`` is the seed's EMA form v = beta v + (1 - beta) g;
``nesterov`` is the classic undamped look-ahead v = beta v + g (torch's
``SGD(nesterov=True)``), the form every published CIFAR-10 recipe states its learning rates
in, so that those numbers carry over.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from descend.errors import ConfigError
from descend.optim.base import DescendOptimizer
from descend.registry import Registry

__all__ = ["OPTIMIZERS", "compare_lr", "create_optimizer", "discriminative_groups"]

OPTIMIZERS: Registry[type[DescendOptimizer]] = Registry("optimizer")


def create_optimizer(
    name: str,
    params: Iterable[Any] | nn.Module,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> DescendOptimizer:
    """``create_optimizer("adam", model.parameters(), lr=1e-3)``, or the model itself:
    ``create_optimizer("muon", model, lr=0.05)``, which lets the optimizer choose its
    parameter groups (`DescendOptimizer.params_of`: Muon gives the classifier head and the
    biases to Nesterov; the others take every parameter).

    ``momentum`` is beta for Momentum and Nesterov, beta1 for Adam and AdamW (beta2 stays
    0.999); SGD, AdaGrad and RMSProp have none and ignore it. Each class's `build` says how.
    Unknown names raise `ConfigError` listing the known ones.
    """
    cls = OPTIMIZERS.get(name)
    chosen = cls.params_of(params) if isinstance(params, nn.Module) else params
    return cls.build(chosen, lr, momentum, weight_decay)


def compare_lr(name: str) -> float:
    """The constant lr ``descend optim compare`` trains optimizer ``name`` with by default."""
    return OPTIMIZERS.get(name).compare_lr


def discriminative_groups(name: str, model: nn.Module, new: Iterable[str], lr: float,
                          scale: float) -> list[dict[str, Any]]:
    """Parameter groups for discriminative learning rates: the parameters named in ``new``
    (a new head) learn at ``lr``, every other one (the layers loaded from elsewhere) at
    ``scale x lr``. The head's group comes first, so the rate a run logs is the one given;
    schedules scale each group from its own peak (`descend.training.fitting.schedules`).

    Optimizer ``name`` must take plain parameters: one that picks its own groups (Muon) would
    have two rules for one parameter, so it is refused with the fix."""
    cls = OPTIMIZERS.get(name)
    if cls.params_of.__func__ is not DescendOptimizer.params_of.__func__:  # type: ignore[attr-defined]
        raise ConfigError(f"--backbone-lr-scale: {name} chooses its own parameter groups; use "
                          "another --optimizer (e.g. nesterov) or --backbone-lr-scale 1")
    head = set(new)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n in head], "lr": lr},
              {"params": [p for n, p in named if n not in head], "lr": lr * scale}]
    return [g for g in groups if g["params"]]
