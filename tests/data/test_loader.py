import pytest
import torch

from descend.data.augment import parse_augment
from descend.data.loader import BatchLoader, channel_stats
from descend.data.splits import ImageTensors
from descend.errors import ConfigError


def _data(n: int = 64) -> ImageTensors:
    g = torch.Generator().manual_seed(0)
    return ImageTensors(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(n) % 4)


def test_batches_are_normalized_and_cover_the_epoch() -> None:
    data = _data()
    mean, std = channel_stats(data.images)
    loader = BatchLoader(data, 16, mean, std, shuffle=True, seed=1)
    xs, ys = zip(*loader)
    x = torch.cat(xs)
    assert sorted(torch.cat(ys).tolist()) == sorted(data.labels.tolist())
    assert x.mean().abs() < 0.05 and (x.std() - 1).abs() < 0.05


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    data = _data()
    a = BatchLoader(data, 16, [0.5] * 3, [0.25] * 3, shuffle=True, seed=1,
                    augment=parse_augment("crop:2,hflip"))
    b = BatchLoader(data, 16, [0.5] * 3, [0.25] * 3, shuffle=True, seed=1,
                    augment=parse_augment("crop:2,hflip"))
    b.set_epoch(3)
    b.set_epoch(0)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    a.set_epoch(1)
    assert not torch.equal(next(iter(a))[0], next(iter(b))[0])


def test_drop_last_and_batch_larger_than_data() -> None:
    data = _data(50)
    assert len(BatchLoader(data, 16, [0] * 3, [1] * 3, drop_last=True)) == 3
    assert len(BatchLoader(data, 16, [0] * 3, [1] * 3)) == 4
    with pytest.raises(ConfigError, match="larger than the 50 training images"):
        BatchLoader(data, 64, [0] * 3, [1] * 3, drop_last=True)


def test_each_sample_draws_its_own_crop_and_flip() -> None:
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(256, 1, 8, 8).contiguous()
    g = torch.Generator().manual_seed(0)
    flipped = parse_augment("hflip")(x, g)
    n_flipped = int((flipped[:, 0, 0, 0] == 7).sum())
    assert 90 < n_flipped < 166  # about half, drawn per sample
    cropped = parse_augment("crop:2")(x, g)
    shifts = {tuple(row.tolist()) for row in cropped[:, 0, 4]}  # a middle row: always real
    assert len(shifts) == 5  # dx in -2..2: five distinct rows, zero-padded at the edges
    assert cropped.shape == x.shape


def test_cutout_zeroes_a_square() -> None:
    x = torch.ones(4, 3, 16, 16)
    out = parse_augment("cutout:4")(x, torch.Generator().manual_seed(0))
    holes = (out == 0).all(dim=1).sum(dim=(1, 2))
    assert ((holes > 0) & (holes <= 25)).all()


@pytest.mark.parametrize("spec", ["crop:x", "blur", "hflip:1:2:3"])
def test_bad_augment_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_augment(spec)
