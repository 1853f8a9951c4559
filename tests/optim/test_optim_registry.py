"""The optimizer registry: every class registers itself, `create_optimizer`'s mapping of
(lr, momentum, weight_decay) onto each class, and the per-optimizer compare learning rates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descend.errors import ConfigError
from descend.optim import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    RMSProp,
    compare_lr,
    create_optimizer,
)

REGISTERED = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}


def test_importing_descend_optim_registers_every_optimizer() -> None:
    # The seed's optimizers, in the seed's order (SGD ... Adam); one added later goes after them.
    assert {name: OPTIMIZERS.get(name) for name in REGISTERED} == REGISTERED
    assert list(OPTIMIZERS)[:len(REGISTERED)] == list(REGISTERED)


def test_every_registered_class_sets_its_own_compare_lr_and_has_test_cases(
    optim_cases: dict,
) -> None:
    covered = {cls for cls, _ in optim_cases.values()}
    for name in OPTIMIZERS:
        cls = OPTIMIZERS.get(name)
        # Set in the class body, not inherited: AdamW or Nesterov may well want another value.
        assert isinstance(cls.__dict__.get("compare_lr"), float), name
        assert cls in covered, f"{name}: add cases to tests/optim/conftest.py"


def test_compare_lr() -> None:
    assert {name: compare_lr(name) for name in REGISTERED} == {
        "sgd": 0.05, "momentum": 0.1, "nesterov": 0.02, "adagrad": 0.01, "rmsprop": 1e-3,
        "adam": 1e-3, "adamw": 1e-3}
    with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'; choose one of: adagrad"):
        compare_lr("lbfgs")


# name -> (class, the settings create_optimizer(name, p, lr=0.1, momentum=0.8,
# weight_decay=0.01) must give it beside lr and weight_decay).
EXPECTED = {
    "sgd": (SGD, {"decoupled_weight_decay": False}),
    "momentum": (Momentum, {"momentum": 0.8, "dampening": None, "nesterov": False}),
    "nesterov": (Nesterov, {"momentum": 0.8, "dampening": 0.0, "nesterov": True}),
    "adagrad": (AdaGrad, {"eps": 1e-8, "eps_inside": True, "initial_accumulator_value": 0.0}),
    "rmsprop": (RMSProp, {"beta": 0.9, "eps": 1e-8, "eps_inside": True}),
    "adam": (Adam, {"betas": (0.8, 0.999), "decoupled_weight_decay": False}),
    "adamw": (AdamW, {"betas": (0.8, 0.999), "decoupled_weight_decay": True}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_create_optimizer_maps_the_run_settings(name: str) -> None:
    cls, settings = EXPECTED[name]
    opt = create_optimizer(name, [nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.8,
                           weight_decay=0.01)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01
    assert {k: group[k] for k in settings} == settings
    # SGD, AdaGrad and RMSProp have no momentum: the run's momentum is dropped, not misused.
    assert ("momentum" in group or "betas" in group) == (name in {"momentum", "nesterov",
                                                                   "adam", "adamw"})


def test_create_optimizer_defaults() -> None:
    opt = create_optimizer("adamw", [nn.Parameter(torch.zeros(2))], lr=1e-3)
    # weight_decay=0.0 is passed even to AdamW, whose class default is 0.01.
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["weight_decay"] == 0.0
    opt = create_optimizer("momentum", [nn.Parameter(torch.zeros(2))], lr=1e-3)
    assert opt.defaults["momentum"] == 0.9


def test_nesterov_by_name_is_torchs_undamped_form() -> None:
    # Nesterov's own default dampening follows beta (the seed's EMA); the name "nesterov"
    # builds torch's SGD(nesterov=True), so that published learning rates carry over.
    paths = []
    for make in (lambda p: create_optimizer("nesterov", p, lr=0.01, weight_decay=5e-4),
                 lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True,
                                           weight_decay=5e-4)):
        gen = torch.Generator().manual_seed(0)
        p = nn.Parameter(torch.randn(50, generator=gen))
        opt = make([p])
        for _ in range(100):
            p.grad = p.detach() * 0.5 + torch.randn(50, generator=gen)
            opt.step()
        paths.append(p.detach().clone())
    torch.testing.assert_close(paths[0], paths[1], rtol=1e-6, atol=1e-7)


def test_unknown_name_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'; choose one of: "
                                          "adagrad, adam, adamw, momentum, muon, "
                                          "nesterov, rmsprop, sgd"):
        create_optimizer("lbfgs", [nn.Parameter(torch.zeros(2))], lr=0.1)
