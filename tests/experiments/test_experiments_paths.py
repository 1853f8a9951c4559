"""SPEC §2: optimizer paths on the 2-D test functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from descend.errors import ConfigError
from descend.experiments.paths import (
    FUNCTIONS,
    format_paths_table,
    learning_rates,
    plot_paths,
    run_paths,
)
from descend.optim import OPTIMIZERS


@pytest.fixture(scope="module")
def results() -> list:
    return run_paths()


def test_every_optimizer_runs_on_every_function_from_the_same_start(results: list) -> None:
    assert {(r.function, r.optimizer) for r in results} == {
        (f, o) for f in FUNCTIONS for o in OPTIMIZERS}
    for r in results:
        assert tuple(r.path[0]) == FUNCTIONS[r.function].start
        assert r.lr == learning_rates()[r.function][r.optimizer]
        assert np.isfinite(r.path).all() and len(r.values) == len(r.path)


def test_adam_and_momentum_make_progress_on_the_quadratic(results: list) -> None:
    by = {(r.function, r.optimizer): r for r in results}
    start = FUNCTIONS["quadratic"].f(*torch.tensor(FUNCTIONS["quadratic"].start)).item()
    for name in ("adam", "momentum", "nesterov", "sgd"):
        r = by["quadratic", name]
        assert not r.diverged
        assert r.final_value < 1e-6 * start, (name, r.final_value)
        assert r.distance_to_minimum() < 1e-3


def test_the_known_minima_are_approached(results: list) -> None:
    by = {(r.function, r.optimizer): r for r in results}
    assert by["rosenbrock", "adam"].distance_to_minimum() < 0.5
    assert by["beale", "adam"].distance_to_minimum() < 0.05
    # The saddle has no minimum: everything that leaves the ridge runs down the y direction.
    for o in OPTIMIZERS:
        r = by["saddle", o]
        assert r.distance_to_minimum() is None and r.final_value < -1.0


def test_divergence_is_stopped_and_reported() -> None:
    (r,) = run_paths(["sgd"], ["rosenbrock"], steps=50, lrs={"rosenbrock": {"sgd": 0.1}})
    assert r.diverged and len(r.path) < 51 and np.isfinite(r.path).all()
    assert "diverged" in format_paths_table([r])


def test_table_and_plot(results: list, tmp_path: Path) -> None:
    table = format_paths_table(results)
    assert len(table.splitlines()) == 2 + len(results)
    assert "quadratic   adam" in table
    out = plot_paths(results, tmp_path / "paths.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_every_registered_optimizer_has_a_learning_rate_on_every_function() -> None:
    # A new optimizer registers itself and carries its rates (path_lrs): one file.
    for fname in FUNCTIONS:
        assert set(learning_rates()[fname]) == set(OPTIMIZERS), fname


def test_unknown_names() -> None:
    # ConfigError is a ValueError: the registry's message, listing the known names.
    with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'; choose one of: adagrad"):
        run_paths(["lbfgs"])
    with pytest.raises(ValueError, match="unknown function 'himmelblau'"):
        run_paths(["sgd"], ["himmelblau"])


def test_a_missing_learning_rate_is_named_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from descend.optim import Adam

    monkeypatch.setattr(Adam, "path_lrs", {k: v for k, v in Adam.path_lrs.items()
                                           if k != "saddle"})
    with pytest.raises(ConfigError, match="no learning rate for adam on saddle"):
        run_paths(["sgd", "adam"], ["quadratic", "saddle"], steps=1)
    (r,) = run_paths(["adam"], ["saddle"], steps=1, lrs={"saddle": {"adam": 0.01}})
    assert r.lr == 0.01


def test_a_path_result_is_json() -> None:
    import json

    (result,) = run_paths(["adam"], ["quadratic"], steps=10)
    row = json.loads(json.dumps(result.to_dict()))
    assert (row["optimizer"], row["steps"], row["diverged"]) == ("adam", 10, False)
    assert row["distance_to_minimum"] == pytest.approx(result.distance_to_minimum())


def test_muons_steps_on_the_point_all_have_one_length(results: list) -> None:
    """The point is a 1 x 2 matrix, whose one singular value five Newton-Schulz steps take from
    1 to p(p(p(p(p(1))))) = 0.696, p(s) = a s + b s^3 + c s^5: every Muon step is 0.696 lr
    along the momentum, however large the gradient (what the tutorial says of its path)."""
    from descend.optim.muon import NS_COEFFICIENTS, Muon

    a, b, c = NS_COEFFICIENTS
    s = 1.0
    for _ in range(5):
        s = a * s + b * s**3 + c * s**5
    decay = Muon([torch.zeros(1, 2)]).defaults["weight_decay"]  # torch's 0.1: paths' Muon's
    for r in results:
        if r.optimizer != "muon":
            continue
        path = torch.from_numpy(r.path)
        steps = (path[:-1] * (1 - r.lr * decay) - path[1:]).norm(dim=1) / r.lr
        assert len(steps) == 500 and not r.diverged, r.function
        # The iteration runs in bfloat16, which rounds X_0's singular value by up to 1%, and
        # five steps near 1 swing that to 0.68-0.72 (3% of 0.696); |g| varies by decades.
        assert steps.min() > 0.95 * s and steps.max() < 1.05 * s, (r.function, steps.aminmax())
