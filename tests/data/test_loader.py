import dataclasses

import pytest
import torch

from descend.data.augment import parse_augment
from descend.data.loader import BatchLoader, LoaderOptions, channel_stats
from descend.data.splits import ImageTensors
from descend.errors import ConfigError


def _data(n: int = 64) -> ImageTensors:
    g = torch.Generator().manual_seed(0)
    return ImageTensors(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(n) % 4)


def test_batches_are_normalized_and_cover_the_epoch() -> None:
    data = _data()
    mean, std = channel_stats(data.images)
    loader = BatchLoader(data, LoaderOptions(16, mean, std, shuffle=True, seed=1))
    xs, ys = zip(*loader)
    x = torch.cat(xs)
    assert sorted(torch.cat(ys).tolist()) == sorted(data.labels.tolist())
    assert x.mean().abs() < 0.05 and (x.std() - 1).abs() < 0.05


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    data = _data()
    a = BatchLoader(data, LoaderOptions(16, [0.5] * 3, [0.25] * 3, shuffle=True, seed=1,
                                        augment=parse_augment("crop:2,hflip")))
    b = BatchLoader(data, LoaderOptions(16, [0.5] * 3, [0.25] * 3, shuffle=True, seed=1,
                                        augment=parse_augment("crop:2,hflip")))
    b.set_epoch(3)
    b.set_epoch(0)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    a.set_epoch(1)
    assert not torch.equal(next(iter(a))[0], next(iter(b))[0])


def _mirrored(loader: BatchLoader, data: ImageTensors, epoch: int) -> torch.Tensor:
    """Which images (by label: the labels are 0..n-1) ``loader`` mirrored in ``epoch``; every
    image comes out either as it is or mirrored."""
    loader.set_epoch(epoch)
    flipped = torch.zeros(len(data), dtype=torch.bool)
    for x, y in loader:
        for image, label in zip(x, y):
            original = data.images[label].float()
            assert torch.equal(image, original) or torch.equal(image, original.flip(2))
            flipped[label] = not torch.equal(image, original)
    return flipped


def test_an_alternating_flip_shows_every_image_both_ways_in_two_epochs() -> None:
    g = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(96))
    options = LoaderOptions(16, [0] * 3, [1 / 255] * 3, shuffle=True, seed=1,
                            augment=parse_augment("alternating-flip"))
    loader = BatchLoader(data, options)
    first, second = _mirrored(loader, data, 0), _mirrored(loader, data, 1)
    assert 30 < int(first.sum()) < 66  # a fair coin per image
    assert torch.equal(second, ~first)  # the other way round in the next epoch
    assert torch.equal(_mirrored(loader, data, 4), first)
    # A resumed run (a new loader, the same seed) mirrors the same images; another seed others.
    assert torch.equal(_mirrored(BatchLoader(data, options), data, 5), second)
    other = BatchLoader(data, dataclasses.replace(options, seed=2))
    assert not torch.equal(_mirrored(other, data, 0), first)


def test_drop_last_and_batch_larger_than_data() -> None:
    data = _data(50)
    assert len(BatchLoader(data, LoaderOptions(16, [0] * 3, [1] * 3, drop_last=True))) == 3
    assert len(BatchLoader(data, LoaderOptions(16, [0] * 3, [1] * 3))) == 4
    with pytest.raises(ConfigError, match="larger than the 50 training images"):
        BatchLoader(data, LoaderOptions(64, [0] * 3, [1] * 3, drop_last=True))


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


def test_normalization_from_uint8_is_the_formula() -> None:
    from descend.data.loader import Normalize

    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    out = Normalize(mean, std, torch.device("cpu"))(x)
    ref = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=1e-5)
    last = Normalize(mean, std, torch.device("cpu"), channels_last=True)(x)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.allclose(last, ref,
                                                                                    atol=1e-5)


def test_evaluation_batches_keep_the_dataset_order() -> None:
    data = _data(50)
    ys = torch.cat([y for _, y in BatchLoader(data, LoaderOptions(16, [0] * 3, [1] * 3))])
    assert torch.equal(ys, data.labels)


def test_make_loader_picks_memory_or_streaming_and_says_which(image_folder) -> None:  # noqa: ANN001
    from descend.data.datasets import load_dataset
    from descend.data.loader import make_loader

    d = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    loader = make_loader(d.train, LoaderOptions(8, [0.5] * 3, [0.25] * 3,
                                                augment=parse_augment("hflip")))
    assert isinstance(loader, BatchLoader) and "in-memory uint8" in loader.description
    lazy = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False,
                        memory_budget=0)
    assert not lazy.in_memory and any("streamed" in n for n in lazy.notes)
    streaming = make_loader(lazy.train, LoaderOptions(8, [0.5] * 3, [0.25] * 3, workers=0))
    assert "streaming from 48 files with 0 worker processes" in streaming.description


@pytest.mark.parametrize(("workers", "augment"), [(0, "crop:2,hflip,rotate:10"),
                                                  (2, "crop:2,hflip,rotate:10"),
                                                  (0, "crop:2,alternating-flip")])
def test_streaming_gives_the_same_batches_as_memory(image_folder, workers: int,  # noqa: ANN001
                                                    augment: str) -> None:
    """Same files, seed and augmentation: the streamed epoch equals the in-memory one."""
    from descend.data.datasets import load_dataset
    from descend.data.loader import make_loader

    mem = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False)
    lazy = load_dataset(f"imagefolder:{image_folder}", image_size=16, progress=False,
                        memory_budget=0)
    assert lazy.train.paths == mem.train.paths
    kw = dict(shuffle=True, drop_last=True, augment=parse_augment(augment), seed=7)
    a = make_loader(mem.train, LoaderOptions(8, [0.5] * 3, [0.25] * 3, **kw))
    b = make_loader(lazy.train, LoaderOptions(8, [0.5] * 3, [0.25] * 3, workers=workers, **kw))
    assert len(a) == len(b) == 6
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        pairs = list(zip(a, b))
        assert len(pairs) == 6
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)
    b.set_epoch(1)
    first = next(iter(b))[1]
    b.set_epoch(0)
    assert not torch.equal(first, next(iter(b))[1])


def test_reflect_crop_shifts_in_mirrored_edges_and_folds_the_flip_in() -> None:
    """reflect-crop:P is a window of the image padded with its own mirrored edges; a flip after
    it is folded into the same gather, with the same result as the two ops apart."""
    import torch.nn.functional as F

    x = torch.rand(64, 3, 8, 8)
    out = parse_augment("reflect-crop:2")(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    windows = {(dy, dx): padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)}
    for i in range(len(x)):
        assert any(torch.equal(out[i], w[i]) for w in windows.values())
    assert (out != 0).all()  # no zero band at the edges
    both = parse_augment("reflect-crop:2,hflip")(x, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    from descend.data.augment import Flip, RandomCrop

    apart = Flip(0.5, 3)(RandomCrop(2, mode="reflect")(x, g), g)
    assert torch.equal(both, apart)
    with pytest.raises(ConfigError, match="give at most 7"):
        parse_augment("reflect-crop:8")(x, torch.Generator())
