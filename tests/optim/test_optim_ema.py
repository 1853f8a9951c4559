"""EMA of series, the tensor EMA updates the optimizers are built from, and ModelEMA."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from descend.errors import ConfigError
from descend.optim.ema import (
    EMA,
    ModelEMA,
    bias_correction,
    ema_,
    ema_square_,
    foreach_ema_,
    foreach_ema_square_,
)

XS = [3.0, -1.0, 4.0, 1.0, -5.0, 9.0, 2.0, 6.0]


def closed_form(xs: list[float], beta: float, zero_init: bool) -> float:
    """v_t written out: weights (1 - beta) beta^(t-k) on x_k, and beta^(t-1) on x_1 in the
    seed form; the zero-init form is normalised by the weights' sum 1 - beta^t."""
    t = len(xs)
    weights = [(1 - beta) * beta ** (t - k) for k in range(1, t + 1)]
    if zero_init:
        return sum(w * x for w, x in zip(weights, xs)) / (1 - beta**t)
    weights[0] = beta ** (t - 1)
    return sum(w * x for w, x in zip(weights, xs))


@pytest.mark.parametrize("zero_init", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_series_ema_matches_closed_form(beta: float, zero_init: bool) -> None:
    ema = EMA(beta, zero_init=zero_init)
    for t in range(1, len(XS) + 1):
        assert ema.update(XS[t - 1]) == pytest.approx(closed_form(XS[:t], beta, zero_init))
    assert ema.t == len(XS)


def test_seed_form_starts_at_first_value_and_recurses() -> None:
    ema = EMA(0.9)
    assert ema.series([1.0, 2.0, 3.0]) == pytest.approx([1.0, 1.1, 1.29])


def test_both_forms_are_unbiased_on_a_constant_series() -> None:
    for zero_init in (False, True):
        ema = EMA(0.98, zero_init=zero_init)
        assert ema.series([5.0] * 10) == pytest.approx([5.0] * 10)
    # Without the correction a zero-initialised EMA would start near 0: that is the bias.
    raw = EMA(0.98, zero_init=True)
    raw.update(5.0)
    assert raw._v == pytest.approx(0.1)


def test_tensor_series_is_not_aliased() -> None:
    ema = EMA(0.5)
    x = torch.tensor([1.0, 2.0])
    ema.update(x)
    x.add_(100.0)  # the caller reuses its buffer
    torch.testing.assert_close(ema.value, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(ema.update(torch.tensor([3.0, 4.0])), torch.tensor([2.0, 3.0]))


def test_ema_errors() -> None:
    with pytest.raises(ValueError, match="before the first update"):
        _ = EMA(0.9).value
    for beta in (1.0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="beta"):
            EMA(beta)


def test_tensor_updates_follow_the_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    v, x = (torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(2))
    beta = 0.8
    expected_v = beta * v + (1 - beta) * x
    expected_s = beta * v + (1 - beta) * x**2
    torch.testing.assert_close(ema_(v.clone(), x, beta), expected_v, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(ema_square_(v.clone(), x, beta), expected_s, rtol=1e-14,
                               atol=1e-15)
    vs, ss = [v.clone(), v[:7].clone()], [v.clone(), v[:7].clone()]
    foreach_ema_(vs, [x, x[:7]], beta)
    foreach_ema_square_(ss, [x, x[:7]], beta)
    torch.testing.assert_close(vs[0], expected_v, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(vs[1], expected_v[:7], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(ss[1], expected_s[:7], rtol=1e-14, atol=1e-15)
    assert bias_correction(0.9, 1) == pytest.approx(0.1)
    assert bias_correction(0.999, 1000) == pytest.approx(1 - 0.999**1000)


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def train_steps(model: nn.Module, ema: ModelEMA, steps: int) -> list[dict[str, torch.Tensor]]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for step in range(steps):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        ema.update(model)
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return seen


def test_model_ema_averages_weights_by_the_formula() -> None:
    model = bn_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = ModelEMA(model, decay=0.9)
    seen = train_steps(model, ema, 5)
    assert ema.num_updates == 5
    for name, avg in ema.shadow.items():
        if avg.is_floating_point():
            expected = start[name]  # v_1 = the weights at construction
            for w in seen:
                expected = 0.9 * expected + 0.1 * w[name]
            torch.testing.assert_close(avg, expected)
            if not torch.equal(seen[0][name], seen[-1][name]):  # weights that moved
                assert not torch.equal(avg, seen[-1][name])  # an average, not a copy
        else:
            assert torch.equal(avg, seen[-1][name])  # num_batches_tracked: copied
    assert ema.shadow["1.num_batches_tracked"].item() == 5


def test_model_ema_keeps_its_averages_in_a_frozen_model_of_its_own() -> None:
    model = bn_model()
    ema = ModelEMA(model, decay=0.9)
    train_steps(model, ema, 3)
    averaged = ema.module
    assert averaged is not model and not averaged.training
    assert not any(p.requires_grad or p.grad is not None for p in averaged.parameters())
    for name, t in averaged.state_dict().items():
        assert torch.equal(t, ema.shadow[name])  # the module is the average
    x = torch.randn(8, 4)
    reference = bn_model().eval()
    reference.load_state_dict(ema.shadow)
    torch.testing.assert_close(averaged(x), reference(x))
    assert model.training  # the live model is untouched


def test_model_ema_applied_to_swaps_and_restores() -> None:
    model = bn_model()
    ema = ModelEMA(model, decay=0.5)
    train_steps(model, ema, 3)
    model.eval()
    x = torch.randn(5, 4)
    live = model(x)
    reference = bn_model()
    reference.load_state_dict(ema.shadow)
    reference.eval()
    with ema.applied_to(model) as m:
        torch.testing.assert_close(m(x), reference(x))
        assert not torch.allclose(m(x), live)
    torch.testing.assert_close(model(x), live)  # the live weights are back
    ema.copy_to(model)
    torch.testing.assert_close(model(x), reference(x))


def test_model_ema_restores_even_when_the_block_raises() -> None:
    model = bn_model()
    ema = ModelEMA(model, decay=0.5)
    train_steps(model, ema, 2)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), ema.applied_to(model):
        raise RuntimeError("boom")
    for k, v in model.state_dict().items():
        assert torch.equal(v, live[k])


def test_model_ema_state_dict_round_trip() -> None:
    model = bn_model()
    ema = ModelEMA(model, decay=0.95)
    train_steps(model, ema, 3)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    fresh = ModelEMA(bn_model(), decay=0.5)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.decay == 0.95 and fresh.num_updates == 3
    for k, v in ema.shadow.items():
        assert torch.equal(fresh.shadow[k], v)
    # Continuing both gives the same averages.
    m1, m2 = bn_model(), bn_model()
    train_steps(m1, ema, 2)
    train_steps(m2, fresh, 2)
    for k, v in ema.shadow.items():
        assert torch.equal(fresh.shadow[k], v)


def test_model_ema_rejects_a_different_model_and_bad_decay() -> None:
    ema = ModelEMA(bn_model())
    other = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="does not fit"):
        ema.load_state_dict(ModelEMA(other).state_dict())
    with pytest.raises(ValueError, match="changed names"):
        ema.update(other)
    with pytest.raises(ConfigError, match="decay"):
        ModelEMA(other, decay=1.0)
