"""descend's optimizers, written from the seed's formulas (SPEC §2).

EMA is the building block: Momentum is an EMA of the gradients, RMSProp an EMA of their
squares, Adam both with bias correction. Each optimizer is a ``torch.optim.Optimizer`` with a
``torch._foreach_*`` path (the default) and a per-parameter reference loop beside it.

Each optimizer module registers its class in `OPTIMIZERS` when it is imported; importing them
all here is what fills the registry whenever ``descend.optim`` is imported.
"""

# isort: off
# Registration order is the seed's teaching order, the order `optim paths` and errors list them.
from descend.optim.sgd import SGD
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.adagrad import AdaGrad
from descend.optim.rmsprop import RMSProp
from descend.optim.adam import Adam, AdamW
from descend.optim.muon import Muon, MuonWithAuxiliary, muon_groups
# isort: on
from descend.optim.ema import EMA, ModelEMA
from descend.optim.registry import (
    OPTIMIZERS,
    compare_lr,
    create_optimizer,
    discriminative_groups,
)

__all__ = ["EMA", "OPTIMIZERS", "SGD", "AdaGrad", "Adam", "AdamW", "ModelEMA", "Momentum",
           "Muon", "MuonWithAuxiliary", "Nesterov", "RMSProp", "compare_lr", "create_optimizer",
           "discriminative_groups", "muon_groups"]
