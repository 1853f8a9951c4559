"""Optimizers: the registry the trainer uses, and (issue 3) descend's own implementations."""

from descend.optim.registry import OPTIMIZERS, create_optimizer

__all__ = ["OPTIMIZERS", "create_optimizer"]
