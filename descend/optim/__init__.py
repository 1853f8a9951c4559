"""descend's optimizers, written from the seed's formulas (SPEC §2).

EMA is the building block: Momentum is an EMA of the gradients, RMSProp an EMA of their
squares, Adam both with bias correction. Each optimizer is a ``torch.optim.Optimizer`` with a
``torch._foreach_*`` path (the default) and a per-parameter reference loop beside it.
"""

from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.ema import EMA, ModelEMA
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.registry import OPTIMIZERS, create_optimizer
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

__all__ = ["EMA", "OPTIMIZERS", "SGD", "AdaGrad", "Adam", "AdamW", "ModelEMA", "Momentum",
           "Nesterov", "RMSProp", "create_optimizer"]
