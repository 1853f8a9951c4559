"""Invalid hyper-parameters, sparse and non-finite gradients, and the registry's calling form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descend.errors import ConfigError
from descend.optim import OPTIMIZERS
from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

BAD = [
    (SGD, dict(lr=-0.1), "lr"),
    (SGD, dict(lr=math.nan), "lr"),
    (SGD, dict(weight_decay=-1e-4), "weight_decay"),
    (Momentum, dict(momentum=1.0), "momentum"),
    (Momentum, dict(momentum=-0.1), "momentum"),
    (Momentum, dict(dampening=1.5), "dampening"),
    (Nesterov, dict(lr=-1.0), "lr"),
    (AdaGrad, dict(eps=-1e-8), "eps"),
    (AdaGrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (RMSProp, dict(beta=1.0), "beta"),
    (RMSProp, dict(alpha=-0.5), "beta"),
    (RMSProp, dict(eps=-1.0), "eps"),
    (Adam, dict(betas=(1.0, 0.999)), "betas[0]"),
    (Adam, dict(betas=(0.9, -0.1)), "betas[1]"),
    (Adam, dict(eps=-1e-8), "eps"),
    (AdamW, dict(weight_decay=-0.01), "weight_decay"),
]


@pytest.mark.parametrize("cls, kwargs, name", BAD, ids=[f"{c.__name__}-{n}" for c, _, n in BAD])
def test_invalid_hyper_parameter_is_a_value_error_naming_it(cls, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError) as info:
        cls([nn.Parameter(torch.zeros(2))], **kwargs)
    assert isinstance(info.value, ConfigError)  # the CLI prints these without a traceback
    assert f"invalid {name}" in str(info.value)
    assert cls.__name__ in str(info.value)


@pytest.mark.parametrize("cls", [OPTIMIZERS.get(name) for name in OPTIMIZERS])
def test_registry_calling_form(cls) -> None:
    # DescendOptimizer.build, which create_optimizer calls, passes every optimizer
    # Cls(params, lr=..., weight_decay=...) plus its own form of the momentum.
    p = nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.1, weight_decay=0.01)
    p.grad = torch.ones(3)
    opt.step()
    assert (p.detach() < 1).all()
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.01


def test_sparse_gradient_is_refused_clearly(optim_case: tuple) -> None:
    cls, kwargs = optim_case
    emb = nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.named_parameters(), **kwargs)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=r"sparse gradients \(parameter 'weight'\)"):
        opt.step()


def named_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_raises_before_changing_anything(optim_case: tuple, bad: float) -> None:
    cls, kwargs = optim_case
    model = named_model()
    named = list(model.named_parameters())
    groups = [  # two groups, so that a bad grad in the second must not let the first move
        {"params": named[:2]},
        {"params": named[2:], "lr": kwargs["lr"] / 2},
    ]
    opt = cls(groups, **kwargs, check_finite=True)
    x = torch.randn(8, 4)
    model(x).square().mean().backward()
    opt.step()  # finite: a normal step, state now exists
    before = [p.detach().clone() for p in model.parameters()]
    state_before = {
        k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
        for k, v in opt.state_dict()["state"].items()
    }
    model.zero_grad()
    model(x).square().mean().backward()
    model[1].weight.grad[1, 2] = bad
    with pytest.raises(FloatingPointError, match="non-finite gradient.*parameter '1.weight'"):
        opt.step()
    for a, b in zip(model.parameters(), before):
        assert torch.equal(a, b)
    for k, v in opt.state_dict()["state"].items():
        for n, t in v.items():
            old = state_before[k][n]
            assert torch.equal(t, old) if torch.is_tensor(t) else t == old
    model[1].weight.grad[1, 2] = 0.0
    opt.step()  # fixed: the step goes through
    assert not torch.equal(next(model.parameters()), before[0])


def test_check_finite_without_names_says_where() -> None:
    p, q = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3, 1))
    opt = Adam([p, q], check_finite=True)
    p.grad, q.grad = torch.zeros(2), torch.tensor([[0.0], [math.nan], [1.0]])
    where = r"parameter 1 of param group 0 \(shape \[3, 1\]\)"
    with pytest.raises(FloatingPointError, match=where):
        opt.step()


def test_check_finite_accepts_huge_finite_and_empty_gradients() -> None:
    # 3e38 is finite in float32 but three of them sum to inf: the fast screen flags the
    # tensor and the exact element-wise check must clear it.
    p, e = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(0))
    h = nn.Parameter(torch.zeros(2, dtype=torch.float16))
    opt = SGD([p, e, h], lr=1e-38, check_finite=True)
    p.grad, e.grad = torch.full((3,), 3e38), torch.zeros(0)
    h.grad = torch.full((2,), 60000.0, dtype=torch.float16)  # sums past float16's 65504
    assert not torch.isfinite(p.grad.sum())
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), -3.0))
    h.grad[1] = math.inf
    with pytest.raises(FloatingPointError, match="parameter 2 of param group 0"):
        opt.step()


def test_default_non_finite_behaviour_is_torchs() -> None:
    # check_finite=False (the default) does what torch.optim does: the NaN flows into the
    # parameter and the moments. Documented in descend.optim.base.DescendOptimizer.
    results = []
    for cls in (Adam, torch.optim.Adam):
        p = nn.Parameter(torch.ones(3))
        opt = cls([p], lr=0.1)
        p.grad = torch.tensor([1.0, math.nan, 2.0])
        opt.step()
        results.append(p.detach().clone())
    assert torch.isnan(results[0][1]) and torch.isnan(results[1][1])
    torch.testing.assert_close(results[0], results[1], equal_nan=True)


def test_closure_is_evaluated_with_grad_and_its_loss_returned() -> None:
    p = nn.Parameter(torch.tensor([2.0]))
    opt = Momentum([p], lr=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 4.0
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 - 0.1 * 4.0]))
