"""Each optimizer against an independent float64 implementation written from SPEC §2's formulas.

The references below are plain numpy, one line per formula, sharing no code with descend. The
gradients are small (about 1e-4), so that eps = 1e-8 inside the root changes the result and a
swapped eps placement would fail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.muon import Muon, MuonWithAuxiliary
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

DIM, STEPS, SCALE = 20, 150, 1e-4
RNG = np.random.default_rng(0)
Q = RNG.normal(size=(DIM, DIM))
A = Q @ Q.T / DIM + np.eye(DIM)  # a well-posed quadratic 0.5 theta'A theta - b'theta
B = RNG.normal(size=DIM)
THETA0 = RNG.normal(size=DIM)
NOISE = RNG.normal(size=(STEPS, DIM))


def gradient(theta: np.ndarray, t: int) -> np.ndarray:
    return SCALE * (A @ theta - B + NOISE[t])


# Reference: (theta, g, state, t, hyper-parameters) -> new theta. t counts from 1.
Ref = Callable[[np.ndarray, np.ndarray, dict, int, dict], np.ndarray]


def ref_sgd(th, g, s, t, h):
    g = g + h["wd"] * th  # L2
    return th - h["lr"] * g


def ref_sgd_decoupled(th, g, s, t, h):
    th = (1 - h["lr"] * h["wd"]) * th
    return th - h["lr"] * g


def ref_momentum(th, g, s, t, h):
    beta, tau = h["beta"], h["tau"]
    s["v"] = g.copy() if t == 1 else beta * s["v"] + (1 - tau) * g  # v_1 = g_1
    d = beta * s["v"] + (1 - tau) * g if h["nesterov"] else s["v"]
    return th - h["lr"] * d


def ref_adagrad(th, g, s, t, h):
    s["G"] = s.get("G", 0.0) + g**2
    if h["inside"]:
        return th - h["lr"] / np.sqrt(s["G"] + h["eps"]) * g
    return th - h["lr"] / (np.sqrt(s["G"]) + h["eps"]) * g


def ref_rmsprop(th, g, s, t, h):
    s["s"] = h["beta"] * s.get("s", 0.0) + (1 - h["beta"]) * g**2
    if h["inside"]:
        return th - h["lr"] / np.sqrt(s["s"] + h["eps"]) * g
    return th - h["lr"] / (np.sqrt(s["s"]) + h["eps"]) * g


def ref_adam(th, g, s, t, h):
    b1, b2 = h["betas"]
    if h["decoupled"]:
        th = (1 - h["lr"] * h["wd"]) * th
    else:
        g = g + h["wd"] * th
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
    m_hat = s["m"] / (1 - b1**t)
    v_hat = s["v"] / (1 - b2**t)
    return th - h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])


CASES = {
    "sgd-l2": (lambda p: SGD(p, lr=0.5, weight_decay=0.1), ref_sgd, dict(lr=0.5, wd=0.1)),
    "sgd-decoupled": (lambda p: SGD(p, lr=0.5, weight_decay=0.1, decoupled_weight_decay=True),
                      ref_sgd_decoupled, dict(lr=0.5, wd=0.1)),
    "momentum": (lambda p: Momentum(p, lr=0.5), ref_momentum,
                 dict(lr=0.5, beta=0.9, tau=0.9, nesterov=False)),
    "momentum-tau-0.5": (lambda p: Momentum(p, lr=0.5, momentum=0.8, dampening=0.5),
                         ref_momentum, dict(lr=0.5, beta=0.8, tau=0.5, nesterov=False)),
    "nesterov": (lambda p: Nesterov(p, lr=0.5), ref_momentum,
                 dict(lr=0.5, beta=0.9, tau=0.9, nesterov=True)),
    "nesterov-undamped": (lambda p: Nesterov(p, lr=0.1, dampening=0.0), ref_momentum,
                          dict(lr=0.1, beta=0.9, tau=0.0, nesterov=True)),
    "adagrad (seed, eps inside)": (lambda p: AdaGrad(p, lr=0.01), ref_adagrad,
                                   dict(lr=0.01, eps=1e-8, inside=True)),
    "adagrad (eps outside)": (lambda p: AdaGrad(p, lr=0.01, eps=1e-8, eps_inside=False),
                              ref_adagrad, dict(lr=0.01, eps=1e-8, inside=False)),
    "rmsprop (seed, eps inside)": (lambda p: RMSProp(p, lr=0.001), ref_rmsprop,
                                   dict(lr=0.001, beta=0.9, eps=1e-8, inside=True)),
    "rmsprop (eps outside)": (lambda p: RMSProp(p, lr=0.001, eps_inside=False), ref_rmsprop,
                              dict(lr=0.001, beta=0.9, eps=1e-8, inside=False)),
    "adam": (lambda p: Adam(p, lr=0.01, weight_decay=0.1), ref_adam,
             dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, wd=0.1, decoupled=False)),
    "adamw": (lambda p: AdamW(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), ref_adam,
              dict(lr=0.01, betas=(0.8, 0.99), eps=1e-8, wd=0.1, decoupled=True)),
}


def run_reference(ref: Ref, hyper: dict) -> np.ndarray:
    theta, state = THETA0.copy(), {}
    path = [theta]
    for t in range(STEPS):
        theta = ref(theta, gradient(theta, t), state, t + 1, hyper)
        path.append(theta)
    return np.array(path)


def run_ours(make: Callable, foreach: bool) -> np.ndarray:
    p = torch.nn.Parameter(torch.tensor(THETA0, dtype=torch.float64))
    opt = make([p])
    for group in opt.param_groups:
        group["foreach"] = foreach
    path = [p.detach().numpy().copy()]
    for t in range(STEPS):
        p.grad = torch.from_numpy(gradient(p.detach().numpy(), t))
        opt.step()
        path.append(p.detach().numpy().copy())
    return np.array(path)


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_formula_in_float64(name: str, foreach: bool) -> None:
    make, ref, hyper = CASES[name]
    expected = run_reference(ref, hyper)
    got = run_ours(make, foreach)
    assert np.abs(expected[-1] - expected[0]).max() > 1e-3, "the reference barely moved"
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_eps_placement_matters_at_this_gradient_scale() -> None:
    # Otherwise the inside/outside cases above could not tell a swapped placement apart.
    for ref, hyper in ((ref_adagrad, dict(lr=0.01, eps=1e-8)),
                       (ref_rmsprop, dict(lr=0.001, beta=0.9, eps=1e-8))):
        inside = run_reference(ref, {**hyper, "inside": True})
        outside = run_reference(ref, {**hyper, "inside": False})
        assert np.abs(inside - outside).max() > 1e-3 * np.abs(outside - THETA0).max()


# Muon's parameters are matrices: a 6 x 4 one (tall: Muon transposes it), and a conv filter
# bank 4 x 2 x 3 x 3 (the wide matrix 4 x 18), each under a noisy quadratic.
M_NOISE = RNG.normal(size=(STEPS, 6, 4))
M_THETA0 = RNG.normal(size=(6, 4))
M_TARGET = RNG.normal(size=(6, 4))
C_NOISE = RNG.normal(size=(STEPS, 4, 2, 3, 3))
C_THETA0 = RNG.normal(size=(4, 2, 3, 3))
C_TARGET = RNG.normal(size=(4, 2, 3, 3))
MATRIX_PROBLEMS = {"matrix 6x4": (M_THETA0, M_TARGET, M_NOISE),
                   "conv 4x2x3x3": (C_THETA0, C_TARGET, C_NOISE)}
NS = (3.4445, -4.775, 2.0315)


def newton_schulz_np(m, steps=5):
    """Keller's quintic, from his post: X0 = M / |M|_F, X <- aX + (bA + cA^2)X, A = XX^T,
    on the wide orientation."""
    a, b, c = NS
    x = m.T if m.shape[0] > m.shape[1] else m
    x = x / np.linalg.norm(x)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if m.shape[0] > m.shape[1] else x


def ref_muon(th, g, s, t, h):
    # Keller's undamped form, B = mu B + G, M = G + mu B: torch's EMA form is this direction
    # times (1 - mu), which the normalisation X0 = M / |M|_F takes out.
    mu = h["mu"]
    th = (1 - h["lr"] * h["wd"]) * th
    s["B"] = mu * s.get("B", 0.0) + g
    m = g + mu * s["B"] if h["nesterov"] else s["B"]
    matrix = m.reshape(m.shape[0], -1)  # a conv filter bank: out x (in kh kw)
    scale = np.sqrt(max(1.0, matrix.shape[0] / matrix.shape[1]))
    return th - h["lr"] * scale * newton_schulz_np(matrix).reshape(th.shape)


MATRIX_CASES = {
    "muon": (lambda p: Muon(p, lr=0.05, ns_dtype="float64"), ref_muon,
             dict(lr=0.05, wd=0.1, mu=0.95, nesterov=True)),
    "muon (classic momentum)": (
        lambda p: MuonWithAuxiliary(p, lr=0.05, momentum=0.9, nesterov=False,
                                    weight_decay=0.0, ns_dtype="float64"),
        ref_muon, dict(lr=0.05, wd=0.0, mu=0.9, nesterov=False)),
}


def run_matrix(step, problem: str) -> np.ndarray:
    """The path of ``step(theta, g, t)`` on a noisy quadratic 0.5 |theta - target|^2."""
    theta, target, noise = MATRIX_PROBLEMS[problem]
    theta, path = theta.copy(), [theta.copy()]
    for t in range(STEPS):
        theta = step(theta, theta - target + noise[t], t + 1)
        path.append(theta)
    return np.array(path)


@pytest.mark.parametrize("problem", list(MATRIX_PROBLEMS))
@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "loop"])
@pytest.mark.parametrize("name", list(MATRIX_CASES))
def test_muon_matches_formula_in_float64(name: str, foreach: bool, problem: str) -> None:
    make, ref, hyper = MATRIX_CASES[name]
    state: dict = {}
    expected = run_matrix(lambda th, g, t: ref(th, g, state, t, hyper), problem)
    p = torch.nn.Parameter(torch.tensor(MATRIX_PROBLEMS[problem][0]))
    opt = make([p])
    for group in opt.param_groups:
        group["foreach"] = foreach

    def ours(th, g, t):
        p.grad = torch.from_numpy(g)
        opt.step()
        return p.detach().numpy().copy()

    got = run_matrix(ours, problem)
    assert np.abs(expected[-1] - expected[0]).max() > 0.1, "the reference barely moved"
    # Measured: at most 1.8e-15 apart (float64 rounding of the two momentum forms).
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_every_registered_optimizer_has_a_formula_case() -> None:
    """A new optimizer needs its own numpy reference and a case above (CONTRIBUTING.md)."""
    from descend.optim import OPTIMIZERS

    param = [torch.nn.Parameter(torch.zeros(2))]
    matrix = [torch.nn.Parameter(torch.zeros(2, 2))]
    covered = {type(factory(param)) for factory, _, _ in CASES.values()}
    covered |= {type(factory(matrix)) for factory, _, _ in MATRIX_CASES.values()}
    missing = [name for name in OPTIMIZERS if OPTIMIZERS.get(name) not in covered]
    assert not missing, f"no formula case in tests/optim/test_optim_formulas.py for {missing}"
