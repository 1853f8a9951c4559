"""Optimizer configurations shared by the optim tests: every class, every code path.

A test that takes a ``case`` argument runs once per entry of `CASES`; the ``optim_case``
fixture turns the id into ``(class, kwargs)`` and ``optim_classes`` lists every registered
class. (Tests run with --import-mode=importlib, so they reach these through fixtures, not
imports.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from descend.optim import OPTIMIZERS
from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.muon import MuonWithAuxiliary
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

Factory = Callable[..., torch.optim.Optimizer]

# id -> (class, keyword arguments). Learning rates are small enough that 200 steps on random
# gradients stay finite and far from overflow.
CASES: dict[str, tuple[Factory, dict[str, Any]]] = {
    "sgd": (SGD, dict(lr=0.05)),
    "sgd-l2": (SGD, dict(lr=0.05, weight_decay=0.1)),
    "sgd-decoupled": (SGD, dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    "momentum": (Momentum, dict(lr=0.05, momentum=0.9)),
    "momentum-undamped": (Momentum, dict(lr=0.01, momentum=0.8, dampening=0.0)),
    "momentum-dampening-0.5": (Momentum, dict(lr=0.01, momentum=0.8, dampening=0.5)),
    "momentum-l2": (Momentum, dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
    "nesterov": (Nesterov, dict(lr=0.05, momentum=0.9)),
    "nesterov-undamped-l2": (Nesterov, dict(lr=0.01, momentum=0.9, dampening=0.0,
                                            weight_decay=0.1)),
    "nesterov-dampening-0.5": (Nesterov, dict(lr=0.01, momentum=0.9, dampening=0.5)),
    "adagrad": (AdaGrad, dict(lr=0.05)),
    "adagrad-outside-l2": (AdaGrad, dict(lr=0.05, eps_inside=False, weight_decay=0.1,
                                         initial_accumulator_value=0.1)),
    "rmsprop": (RMSProp, dict(lr=0.01)),
    "rmsprop-outside-decoupled": (RMSProp, dict(lr=0.01, eps_inside=False, weight_decay=0.1,
                                                decoupled_weight_decay=True)),
    "adam": (Adam, dict(lr=0.01)),
    "adam-l2": (Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (AdamW, dict(lr=0.01, weight_decay=0.1)),
    # Matrices (conv filters as out x rest too) take Muon, the 0-D and 1-D ones Nesterov.
    "muon": (MuonWithAuxiliary, dict(lr=0.02)),
    "muon-classic-l2": (MuonWithAuxiliary, dict(lr=0.02, momentum=0.9, nesterov=False,
                                                weight_decay=0.01)),
    "muon-float32-rms": (MuonWithAuxiliary, dict(lr=0.01, ns_dtype="float32",
                                                 adjust_lr_fn="match_rms_adamw")),
}

ALL_CLASSES = [OPTIMIZERS.get(name) for name in OPTIMIZERS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", sorted(CASES))


@pytest.fixture
def optim_case(case: str) -> tuple[Factory, dict[str, Any]]:
    return CASES[case]


@pytest.fixture
def optim_cases() -> dict[str, tuple[Factory, dict[str, Any]]]:
    return CASES


@pytest.fixture
def optim_classes() -> list[Factory]:
    return list(ALL_CLASSES)


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One intra-op thread: deterministic reductions in forward/backward, and no stalls from
    oversubscribed thread pools on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
