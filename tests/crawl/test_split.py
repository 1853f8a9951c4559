from __future__ import annotations

import math

import pytest

from descend.crawl.split import class_offset, split_for


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.5, 0.9])
def test_every_prefix_is_stratified_to_within_one_image(fraction: float) -> None:
    for seed in range(5):
        offset = class_offset(seed, "cat", fraction)
        assert 0 <= offset < 1 - fraction
        splits = [split_for(k, fraction, offset) for k in range(200)]
        assert splits[0] == "train"  # a one-image class is never val-only
        for n in range(1, 201):
            val = splits[:n].count("val")
            assert math.floor(n * fraction) <= val <= math.ceil(n * fraction)


def test_seed_and_class_choose_positions_deterministically() -> None:
    a = [split_for(k, 0.2, class_offset(0, "cat", 0.2)) for k in range(50)]
    assert a == [split_for(k, 0.2, class_offset(0, "cat", 0.2)) for k in range(50)]
    others = {
        tuple(split_for(k, 0.2, class_offset(seed, "cat", 0.2)) for k in range(50))
        for seed in range(20)
    }
    assert len(others) > 1


def test_zero_fraction_puts_everything_in_train() -> None:
    assert {split_for(k, 0.0, 0.0) for k in range(100)} == {"train"}
