"""SPEC §1: the seed's three gradient-descent modes on identical data and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from descend.experiments.gd import format_gd_table, make_gd_data, plot_gd, run_gd_modes


@pytest.fixture(scope="module")
def seed_run() -> list:
    return run_gd_modes()  # the seed's settings: 1000 x 10, 20 epochs, lr 0.01, batch 32


def test_update_counts_are_the_seeds(seed_run: list) -> None:
    assert [(r.mode, r.batch_size, r.updates) for r in seed_run] == [
        ("BGD", 1000, 20), ("SGD", 1, 20000), ("MBGD", 32, 640)]
    for r in seed_run:
        assert r.history_updates[0] == 0 and r.history_updates[-1] == r.updates
        assert len(r.history_updates) == len(r.history_loss) == len(r.history_seconds)
        assert r.history_seconds == sorted(r.history_seconds) and r.seconds > 0


def test_same_start_and_the_expected_ranking(seed_run: list) -> None:
    bgd, sgd, mbgd = seed_run
    # Identical data and initial weights: the same loss before the first update.
    assert bgd.history_loss[0] == sgd.history_loss[0] == mbgd.history_loss[0]
    start = bgd.history_loss[0]
    # 20 full-batch steps of lr 0.01 barely move; 640 and 20,000 small steps get close to
    # the truth (the noise floor is 0.1^2 = 0.01).
    assert bgd.final_loss > 0.3 * start
    assert mbgd.final_loss < 0.02 and sgd.final_loss < 0.02
    assert mbgd.distance_to_w < 0.05 and sgd.distance_to_w < 0.1
    assert bgd.distance_to_w > 10 * mbgd.distance_to_w
    assert sgd.seconds > mbgd.seconds  # 20,000 updates cost more than 640


def test_table_and_plot(seed_run: list, tmp_path: Path) -> None:
    table = format_gd_table(seed_run)
    lines = table.splitlines()
    assert len(lines) == 5 and "updates" in lines[0]
    assert lines[3].split()[:3] == ["SGD", "1", "20000"]
    out = plot_gd(seed_run, tmp_path / "sub" / "gd.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_random_targets_are_the_seeds_variant() -> None:
    data = make_gd_data(random_targets=True)
    # Nothing to learn: the best linear fit explains almost none of y's unit variance.
    assert data.optimum_loss > 0.9
    results = run_gd_modes(samples=200, epochs=5, random_targets=True,
                           batch_sizes={"MBGD": 32, "BGD": None})
    assert [r.updates for r in results] == [35, 5]  # ceil(200 / 32) = 7 batches per epoch
    floor = make_gd_data(samples=200, random_targets=True).optimum_loss
    for r in results:
        assert r.final_loss >= floor - 1e-6  # no linear model beats least squares


def test_truth_is_recoverable_from_the_data() -> None:
    data = make_gd_data()
    design = np.c_[data.x.numpy(), np.ones(len(data.x))]
    fit = np.linalg.lstsq(design, data.y.numpy(), rcond=None)[0].ravel()
    assert np.abs(fit[:-1] - data.w_star.numpy().ravel()).max() < 0.02
    assert abs(fit[-1] - data.b_star) < 0.02
    assert data.optimum_loss == pytest.approx(0.01, rel=0.2)  # the noise variance


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch size for X"):
        run_gd_modes(samples=10, epochs=1, batch_sizes={"X": 0})


def test_a_result_is_json(seed_run: list) -> None:
    import json

    row = json.loads(json.dumps(seed_run[0].to_dict()))
    assert (row["mode"], row["updates"], len(row["weights"])) == ("BGD", 20, 10)
    assert len(row["history"]["loss"]) == len(row["history"]["updates"])
