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
