"""Every augmentation: shape, value range, per-sample randomness, determinism, and its math."""

import math

import pytest
import torch

from descend.data.augment import AUGMENTATIONS, Augment, parse_augment, warp
from descend.errors import ConfigError

# One spec per batch op, with parameters strong enough that every sample visibly changes.
RANDOM_OPS = {
    "crop": "crop:4",
    "hflip": "hflip",
    "alternating-flip": "alternating-flip",  # without the loader's mask: a random flip
    "vflip": "vflip",
    "cutout": "cutout:8",
    "rotate": "rotate:30",
    "affine": "affine:10:0.2:0.8:1.2",
    "translate": "translate:0.25",
    "random-resized-crop": "random-resized-crop:0.2:1",
    "color-jitter": "color-jitter:0.5:0.5:0.5:0.2",
    "grayscale": "grayscale:0.5",
    "gaussian-blur": "gaussian-blur:5:0.5:3",
}


def _batch(n: int = 64, c: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    """Distinct, structured images: a colour gradient plus noise, uint8."""
    g = torch.Generator().manual_seed(0)
    ys = torch.linspace(0, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w)[None, :].expand(h, w)
    base = torch.stack([ys, xs, 1 - xs][:c])[None].expand(n, c, h, w)
    noise = torch.rand(n, c, h, w, generator=g) * 0.3
    return ((base * 0.7 + noise) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", list(RANDOM_OPS))
def test_shape_range_randomness_and_determinism(name: str) -> None:
    aug = parse_augment(RANDOM_OPS[name])
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b), "the same seed must give the same batch"
    assert not torch.equal(a, c), "another seed must give another batch"
    # Per sample: the change of each image differs between samples (own parameters).
    delta = (a - x.float() / 255).flatten(1)
    changed = delta.abs().amax(1) > 1e-6
    assert changed.any()
    assert len({tuple(d.round(decimals=3)[:64].tolist()) for d in delta}) > 4


@pytest.mark.parametrize("name", list(RANDOM_OPS))
def test_uint8_and_float_inputs_agree(name: str) -> None:
    """The loader feeds uint8 (exact ops stay uint8); a float caller gets the same result."""
    aug = parse_augment(RANDOM_OPS[name])
    x = _batch(8)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x.float() / 255, torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-5)


def test_exact_ops_stay_uint8_in_the_loader_path() -> None:
    x = _batch(8)
    out = parse_augment("crop:2,hflip,vflip,cutout:4").run(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8
    assert parse_augment("crop:2,rotate:5").run(x, torch.Generator()).dtype == torch.float32


def test_every_registered_name_parses() -> None:
    for name in AUGMENTATIONS:
        spec = f"{name}:16" if name in ("resize", "center-crop") else name
        assert isinstance(parse_augment(spec), Augment)


def test_crop_is_a_shift_of_the_zero_padded_image() -> None:
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(256, 1, 8, 8).contiguous()
    out = parse_augment("crop:2").run(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x[0, 0], (2, 2, 2, 2))
    windows = {(dy, dx): padded[dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)}
    found = set()
    for img in out[:, 0]:
        match = [k for k, win in windows.items() if torch.equal(win, img)]
        assert len(match) == 1
        found.add(match[0])
    assert len(found) == 25  # every shift is drawn


def test_flips_mirror_about_half_the_samples() -> None:
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(400, 1, 8, 8).contiguous()
    out = parse_augment("hflip")(x, torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] == 7
    assert torch.equal(out[flipped], x[flipped].flip(3))
    assert torch.equal(out[~flipped], x[~flipped])
    assert 150 < int(flipped.sum()) < 250
    assert int((parse_augment("vflip:1")(x, torch.Generator()) != x.flip(2)).sum()) == 0
    assert torch.equal(parse_augment("hflip:0")(x, torch.Generator()), x)


def test_cutout_zeroes_exactly_a_square_clipped_at_the_border() -> None:
    x = torch.ones(200, 3, 16, 16)
    out = parse_augment("cutout:4")(x, torch.Generator().manual_seed(0))
    holes = (out == 0).all(dim=1)
    area = holes.sum(dim=(1, 2))
    assert (area > 0).all() and (area <= 16).all()
    assert (area == 16).sum() > 100  # most squares lie inside the image
    assert ((out == 0) == holes[:, None]).all()  # all channels together


def test_rotation_by_a_right_angle_turns_the_image() -> None:
    x = torch.rand(1, 3, 9, 9)
    aug = parse_augment("rotate:90")
    # Draw until both extremes are near: a rotation of +-90 degrees maps pixels exactly.
    theta = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    turned = warp(x, theta)
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)
    out = aug(x.expand(64, 3, 9, 9), torch.Generator().manual_seed(0))
    centre = out[:, :, 4, 4]
    assert torch.allclose(centre, x[:, :, 4, 4].expand(64, 3), atol=1e-5)  # the centre stays


def test_translate_moves_by_whole_pixels_at_most_the_fraction() -> None:
    x = torch.zeros(128, 1, 20, 20)
    x[:, :, 10, 10] = 1.0
    out = parse_augment("translate:0.2")(x, torch.Generator().manual_seed(0))
    mass = out[:, 0]
    ys = (mass.sum(2) * torch.arange(20.0)).sum(1) / mass.sum((1, 2))
    xs = (mass.sum(1) * torch.arange(20.0)).sum(1) / mass.sum((1, 2))
    assert ((xs - 10).abs() <= 4 + 1e-4).all() and ((ys - 10).abs() <= 4 + 1e-4).all()
    assert (xs - 10).abs().max() > 2.5  # the range is used
    assert torch.allclose(mass.sum((1, 2)), torch.ones(128), atol=1e-4)  # bilinear keeps mass


def test_random_resized_crop_takes_a_region_of_the_asked_area() -> None:
    # A horizontal ramp: a crop of width share s shows a ramp s times steeper.
    x = torch.linspace(0, 1, 64)[None, None, None, :].expand(200, 1, 64, 64).contiguous()
    out = parse_augment("random-resized-crop:0.25:0.25:1:1")(x, torch.Generator().manual_seed(0))
    span = out[:, 0, 32, -1] - out[:, 0, 32, 0]
    assert torch.allclose(span, torch.full_like(span, 0.5), atol=0.03)  # width share sqrt(.25)
    assert out[:, 0, 32, 0].std() > 0.05  # the crop's place varies per sample
    full = parse_augment("random-resized-crop:1:1:1:1")(x, torch.Generator())
    assert torch.allclose(full, x, atol=1e-5)  # the whole image is the identity


def test_consecutive_warps_are_one_resampling() -> None:
    """rotate then translate through one grid_sample equals the composed matrix."""
    x = torch.rand(16, 3, 12, 12)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fused = parse_augment("rotate:20,translate:0.1")(x, g1)
    rot, shift = parse_augment("rotate:20").ops[0], parse_augment("translate:0.1").ops[0]
    t1 = rot.theta(16, 12, 12, g2, x.device)  # type: ignore[attr-defined]
    t2 = shift.theta(16, 12, 12, g2, x.device)  # type: ignore[attr-defined]
    assert torch.allclose(fused, warp(x, t1 @ t2), atol=1e-6)


def test_color_jitter_keeps_greys_grey_and_factors_in_range() -> None:
    grey = torch.full((64, 3, 4, 4), 0.5)
    out = parse_augment("color-jitter:0:0:0:0.5")(grey, torch.Generator().manual_seed(0))
    assert torch.allclose(out, grey, atol=1e-5)  # hue and saturation leave grey alone
    out = parse_augment("color-jitter:0.5:0:0:0")(grey, torch.Generator().manual_seed(0))
    f = out[:, 0, 0, 0] / 0.5
    assert f.min() >= 0.5 - 1e-6 and f.max() <= 1.5 + 1e-6 and f.std() > 0.1


def test_hue_rotation_keeps_luma() -> None:
    x = torch.rand(32, 3, 6, 6) * 0.5 + 0.25  # away from the clamp
    out = parse_augment("color-jitter:0:0:0:0.5")(x, torch.Generator().manual_seed(0))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    moved = (out - x).abs().amax((1, 2, 3)) > 0.01
    unclamped = ((out > 0) & (out < 1)).all(1).all(1).all(1)
    keep = moved & unclamped
    assert keep.sum() > 5
    assert torch.allclose((out * luma).sum(1)[keep], (x * luma).sum(1)[keep], atol=1e-4)


def test_grayscale_gives_equal_channels_for_the_picked_share() -> None:
    x = torch.rand(400, 3, 4, 4)
    out = parse_augment("grayscale:0.5")(x, torch.Generator().manual_seed(0))
    grey = (out[:, 0] == out[:, 1]).all(2).all(1) & (out[:, 1] == out[:, 2]).all(2).all(1)
    assert 150 < int(grey.sum()) < 250
    assert torch.equal(out[~grey], x[~grey])
    one_channel = torch.rand(4, 1, 4, 4)
    assert torch.equal(parse_augment("grayscale:1")(one_channel, torch.Generator()), one_channel)


def test_gaussian_blur_keeps_the_mean_and_lowers_the_variance() -> None:
    x = torch.rand(32, 3, 16, 16)
    out = parse_augment("gaussian-blur:5:1:2")(x, torch.Generator().manual_seed(0))
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert torch.allclose(out[inner].mean(), x[inner].mean(), atol=0.01)
    assert out.var() < 0.5 * x.var()
    constant = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(parse_augment("gaussian-blur:3")(constant, torch.Generator()),
                          constant, atol=1e-6)


def test_the_decode_geometry_is_its_own_settings_not_batch_ops() -> None:
    from descend.data.geometry import Geometry, split_geometry

    assert Geometry(resize=40, center_crop=32).decode_size(64) == (32, 40)
    assert Geometry(resize=48).decode_size(64) == (48, None)
    assert Geometry(center_crop=28).decode_size(32) == (28, 32)  # CenterCrop
    assert Geometry(image_size=24).decode_size(64) == (24, None)
    assert Geometry().decode_size(64) == (64, None)
    with pytest.raises(ConfigError, match="--image-size 32 disagrees with --resize"):
        Geometry(32, resize=40).decode_size(64)
    with pytest.raises(ConfigError, match="--center-crop 32 is larger than --resize 20"):
        Geometry(resize=20, center_crop=32).decode_size(64)
    # 0.1 spelled them in --augment: still read, and moved out of it
    assert split_geometry("resize:40,center-crop:32,hflip") == (
        "hflip", {"resize": 40, "center_crop": 32})
    assert split_geometry("resize:40") == ("none", {"resize": 40})  # it replaced the default
    assert split_geometry("crop:4,hflip") == ("crop:4,hflip", {})
    with pytest.raises(ConfigError, match="resize needs a whole number"):
        split_geometry("resize:big")
    with pytest.raises(ConfigError, match="not an augmentation: give it as --center-crop N"):
        parse_augment("hflip,center-crop:24")
    assert len(parse_augment("hflip,normalize,to-tensor").ops) == 1


@pytest.mark.parametrize("spec", ["crop:x", "blur", "hflip:1:2:3", "hflip:2", "crop:1.5",
                                  "gaussian-blur:4", "color-jitter:0:0:0:0.9", "resize",
                                  "random-resized-crop:0.5:0.2"])
def test_bad_augment_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_augment(spec)


def test_affine_rotation_is_a_rotation_on_non_square_images() -> None:
    """theta = S a S^-1: a point at radius r stays at radius r in pixels."""
    x = torch.zeros(1, 1, 21, 41)
    x[0, 0, 10, 30] = 1.0  # 10 pixels right of the centre (20, 10)
    angle = math.pi / 2
    a = torch.tensor([[[math.cos(-angle), -math.sin(-angle)],
                       [math.sin(-angle), math.cos(-angle)]]])
    from descend.data.augment import _pixel_affine

    out = warp(x, _pixel_affine(a, torch.zeros(1, 2), 21, 41))
    y, xx = divmod(int(out.flatten().argmax()), 41)
    assert (abs(y - 10), abs(xx - 20)) == (10, 0)


def test_crop_then_hflip_fused_in_one_gather_equals_the_two_ops() -> None:
    """The loader path (uint8) folds the flip into the crop; the float path runs them apart."""
    x = _batch(64)
    aug = parse_augment("crop:3,hflip,cutout:4")
    fused = aug(x, torch.Generator().manual_seed(4))
    apart = aug(x.float() / 255, torch.Generator().manual_seed(4))
    assert torch.equal(fused, apart)
    flipped = parse_augment("crop:0,hflip:1")(x, torch.Generator())
    assert torch.equal(flipped, x.flip(3).float() / 255)


def test_an_alternating_flip_mirrors_the_samples_the_loader_names() -> None:
    """Given the loader's mask (`Augment.run`'s ``mirrored``), the flip draws nothing: it mirrors
    those samples, folded into the crop on uint8 as on floats apart."""
    x = _batch(64)
    which = torch.arange(64) % 3 == 0
    aug = parse_augment("crop:3,alternating-flip,cutout:4")
    assert aug.mirrors() and aug.alternates() and not parse_augment("crop:3,hflip").alternates()
    fused = aug.run(x, torch.Generator().manual_seed(4), which).float() / 255
    apart = aug.run(x.float() / 255, torch.Generator().manual_seed(4), which)
    assert torch.equal(fused, apart)
    only = parse_augment("alt-flip").run(x, torch.Generator(), which)
    assert torch.equal(only[which], x[which].flip(3)) and torch.equal(only[~which], x[~which])
    no_shift = parse_augment("crop:0,alternating-flip").run(x, torch.Generator(), which)
    assert torch.equal(no_shift, only)
