"""state_dict round trips and the torch.optim.lr_scheduler classes driving our optimizers."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

from descend.optim.adam import Adam
from descend.optim.base import has_momentum
from descend.optim.momentum import Momentum
from descend.optim.rmsprop import RMSProp


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0], [0.0]]) + 0.7
    return x, y + 0.1 * torch.randn(256, 1, generator=gen)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1), nn.Linear(1, 1))


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, start: int = 0,
          sched: object | None = None) -> list[float]:
    x, y = regression_data()
    losses = []
    for step in range(start, start + steps):
        xb, yb = x[(step * 32) % 256:][:32], y[(step * 32) % 256:][:32]
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        if step % 4 == 3:
            model[3].weight.grad = None  # a parameter that skips some steps
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


def test_state_dict_round_trip_continues_identical_trajectory(optim_case: tuple) -> None:
    cls, kwargs = optim_case
    straight = make_model()
    opt = cls(straight.parameters(), **kwargs)
    expected = train(straight, opt, 60)

    first = make_model()
    opt1 = cls(first.parameters(), **kwargs)
    train(first, opt1, 30)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optim": opt1.state_dict()}, buffer)
    buffer.seek(0)
    # weights_only: what a checkpoint loader in this project uses; the state must pass it.
    saved = torch.load(buffer, weights_only=True)

    resumed = make_model()
    resumed.load_state_dict(saved["model"])
    opt2 = cls(resumed.parameters(), **kwargs)
    opt2.load_state_dict(saved["optim"])
    assert opt2.state_dict()["state"].keys() == opt1.state_dict()["state"].keys()
    del first, opt1  # nothing shared with the first run survives
    got = train(resumed, opt2, 30, start=30)
    assert got == expected[30:]
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_fresh_optimizer_without_state_diverges(optim_case: tuple) -> None:
    # The round trip above must mean something: dropping the state changes the path
    # (plain SGD has no state, so there the two runs are rightly the same).
    cls, kwargs = optim_case
    straight = make_model()
    expected = train(straight, cls(straight.parameters(), **kwargs), 60)
    restarted = make_model()
    train(restarted, cls(restarted.parameters(), **kwargs), 30)
    got = train(restarted, cls(restarted.parameters(), **kwargs), 30, start=30)
    stateless = cls.__name__ == "SGD"
    assert (got == expected[30:]) == stateless


def test_step_lr_drives_momentum() -> None:
    model = make_model()
    opt = Momentum(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    losses = train(model, opt, 25, sched=sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)
    assert losses[-1] < 0.2 * losses[0]


def test_cosine_drives_adam() -> None:
    model = make_model()
    x, y = regression_data()
    initial = nn.functional.mse_loss(model(x), y).item()
    opt = Adam(model.parameters(), lr=0.05)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=50)
    lrs = []
    for _ in range(50):
        train(model, opt, 1, sched=sched)
        lrs.append(opt.param_groups[0]["lr"])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 1e-6
    assert nn.functional.mse_loss(model(x), y).item() < 0.2 * initial


@pytest.mark.parametrize(
    "ours, theirs, key",
    [
        # Undamped, ours is torch's algorithm, so the two must agree under the cycling too.
        (lambda p: Momentum(p, lr=0.01, dampening=0.0),
         lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9), "momentum"),
        (lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01), "betas"),
    ],
    ids=["momentum", "adam"],
)
def test_one_cycle_cycles_momentum_like_torch(ours, theirs, key: str) -> None:
    runs = []
    for make in (ours, theirs):
        model = make_model()
        opt = make(model.parameters())
        sched = lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=60)
        lrs, moms, losses = [], [], []
        for step in range(60):
            value = opt.param_groups[0][key]
            moms.append(value[0] if key == "betas" else value)
            lrs.append(opt.param_groups[0]["lr"])
            losses += train(model, opt, 1, start=step, sched=sched)
        runs.append((lrs, moms, losses, [p.detach().clone() for p in model.parameters()]))
    (lrs, moms, losses, params), (t_lrs, t_moms, t_losses, t_params) = runs
    assert max(lrs) == pytest.approx(0.05) and min(lrs) < 0.01
    assert max(moms) == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=1e-3)
    assert (lrs, moms) == (t_lrs, t_moms)
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10])
    assert losses == t_losses
    for a, b in zip(params, t_params):
        assert torch.equal(a, b)


def test_one_cycle_with_default_momentum_uses_the_cycled_beta() -> None:
    # Default dampening follows beta: v_t = beta_t v_{t-1} + (1 - beta_t) g_t with the cycled
    # beta_t. Check one step by hand.
    p = nn.Parameter(torch.zeros(3))
    opt = Momentum([p], lr=0.1)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    g1, g2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.5, 2.0])
    p.grad = g1
    opt.step()
    sched.step()
    beta, lr = opt.param_groups[0]["momentum"], opt.param_groups[0]["lr"]
    assert beta != 0.9  # the scheduler moved it
    before = p.detach().clone()
    p.grad = g2
    opt.step()
    v2 = beta * g1 + (1 - beta) * g2
    torch.testing.assert_close(p.detach(), before - lr * v2)


def test_one_cycle_needs_cycle_momentum_false_without_momentum() -> None:
    model = make_model()
    opt = RMSProp(model.parameters(), lr=0.01)
    assert not has_momentum(opt)
    assert has_momentum(Momentum(model.parameters())) and has_momentum(Adam(model.parameters()))
    with pytest.raises(ValueError, match="momentum"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=10)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=10, cycle_momentum=False)
    losses = train(model, opt, 10, sched=sched)
    assert losses[-1] < losses[0]
