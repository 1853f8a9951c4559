"""fastres: patch whitening from data, fixed batch-norm scale, test-time mirroring."""

from __future__ import annotations

import pytest
import torch

from descend.errors import ConfigError
from descend.models import ModelSpec, create_model
from descend.models.fastres import PATCH, FastRes


def _patches(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    p = x.unfold(2, PATCH, 1).unfold(3, PATCH, 1).permute(0, 2, 3, 1, 4, 5)
    return p.reshape(-1, c * PATCH * PATCH)


def test_whitening_decorrelates_the_training_patches() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(400, 1, 16, 16, generator=g)
    # Strongly correlated channels and neighbours: what natural images look like.
    images = torch.cat([base, 0.8 * base + 0.2 * torch.randn(400, 1, 16, 16, generator=g),
                        torch.randn(400, 1, 16, 16, generator=g)], 1)
    images = images + images.roll(1, dims=3)
    model = FastRes(10, 3, (16, 16))
    model.init_from_data(images)
    out = torch.nn.functional.conv2d(images, model.whiten.weight[:12])  # one sign, no bias
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(flat.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    before = torch.corrcoef(_patches(images).T)
    assert before.abs().fill_diagonal_(0).max() > 0.5  # there was something to remove
    assert torch.equal(model.whiten.weight[12:], -model.whiten.weight[:12])


def test_fixed_weights_get_no_gradient_and_the_rest_train() -> None:
    model = FastRes(10, 1, (28, 28))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "whiten.weight" in frozen and "groups.0.bn1.weight" in frozen
    assert "whiten.bias" not in frozen and "groups.0.bn1.bias" not in frozen
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert model.whiten.weight.grad is None and model.head.weight.grad is not None


def test_tta_averages_the_mirror_image_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    model = FastRes(10, 3, (32, 32), tta=True).eval()
    x = torch.randn(3, 3, 32, 32)
    plain = FastRes(10, 3, (32, 32)).eval()
    plain.load_state_dict(model.state_dict())
    expected = (plain(x) + plain(x.flip(-1))) / 2
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert torch.allclose(model(x), model(x.flip(-1)), atol=1e-5)  # mirror-invariant
    model.train()
    assert not torch.allclose(model(x), model(x.flip(-1)), atol=1e-3)


def test_tta_level_2_adds_the_shifted_mirror_pairs_at_half_the_weight() -> None:
    torch.manual_seed(0)
    model = FastRes(10, 3, (32, 32), tta=2).eval()
    x = torch.randn(2, 3, 32, 32)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :32, :32], padded[..., 2:, 2:]
    assert torch.equal(up_left[..., 1:, 1:], x[..., :31, :31])  # shifted by one pixel
    assert torch.equal(down_right[..., :31, :31], x[..., 1:, 1:])
    views = [x, x.flip(-1), up_left, up_left.flip(-1), down_right, down_right.flip(-1)]
    weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    expected = sum(w * model.logits(v) for w, v in zip(weights, views))
    assert torch.allclose(model(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="level"):
        FastRes(10, 3, (32, 32), tta=3)


def test_the_recipe_picks_the_tta_level_the_training_augmentation_allows() -> None:
    from descend.models.fastres import RECIPE, WHITEN_BIAS_EPOCHS, tta_args

    assert RECIPE.model_args is not None
    assert RECIPE.model_args("crop:2,hflip") == {"tta": 2, "whiten_bias_epochs": WHITEN_BIAS_EPOCHS}
    assert tta_args("crop:2,hflip") == {"tta": 2} and tta_args("hflip") == {"tta": 1}
    assert tta_args("crop:2") == {"tta": 0} and tta_args(None) == {"tta": 0}
    assert tta_args("crop:0,hflip") == {"tta": 1}


def test_bad_arguments_and_tiny_images_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="widths"):
        create_model(ModelSpec("fastres", 10, 3, (32, 32), {"widths": [8, 16]}))
    with pytest.raises(ConfigError, match="too small"):
        create_model(ModelSpec("fastres", 10, 3, (8, 8)))
    model = create_model(ModelSpec("fastres", 7, 1, (28, 28), {"widths": [8, 8, 16]}))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_a_spec_names_every_argument_so_a_changed_default_cannot_break_it() -> None:
    from descend.models import with_defaults

    spec = with_defaults(ModelSpec("fastres", 10, 3, (32, 32), {"widths": [8, 8, 16]}))
    assert spec.kwargs == {"widths": [8, 8, 16], "scale": 1 / 9, "tta": 0, "dirac": False,
                           "whiten_bias_epochs": None}
    assert with_defaults(ModelSpec("cnn", 10, 3, (32, 32))).kwargs == {"widths": [16, 32, 64]}
    assert with_defaults(ModelSpec("tv:resnet18", 10, 3, (32, 32))).kwargs == {}


def test_each_model_has_its_recipe_and_tv_models_one_for_fine_tuning() -> None:
    from descend.models import DEFAULT_MODEL, recipe_for
    from descend.models.fastres import RECIPE
    from descend.models.registry import GENERIC
    from descend.training.planning.recipe import peak_lr

    assert DEFAULT_MODEL == "fastres" and recipe_for("fastres") is RECIPE
    assert recipe_for("cnn") is GENERIC and recipe_for("mlp", fine_tuning=True) is GENERIC
    scratch, tuned = recipe_for("tv:resnet18"), recipe_for("tv:resnet18", fine_tuning=True)
    assert scratch is not GENERIC and tuned is not scratch
    assert peak_lr("tv:resnet18", 128) == scratch.peak_lr / 2  # scaled with the batch
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        recipe_for("nope")


def test_dirac_starts_the_first_filters_of_each_conv_as_the_identity() -> None:
    torch.manual_seed(0)
    model = FastRes(num_classes=10, widths=(8, 16, 32), dirac=True)
    x = torch.randn(2, 8, 6, 6)
    conv = model.groups[1].conv1  # 8 -> 16 filters: the first 8 pass their channel through
    assert torch.allclose(conv(x)[:, :8], x)
    assert conv.weight[8:].abs().sum() > 0  # the rest keep their random start
    plain = FastRes(num_classes=10, widths=(8, 16, 32))
    assert not torch.allclose(plain.groups[1].conv1(x)[:, :8], x)


def test_the_whitening_bias_trains_for_its_epochs_then_stops_and_the_step_skips_the_stem() -> None:
    torch.manual_seed(0)
    model = FastRes(10, 3, (32, 32), widths=(8, 8, 16), whiten_bias_epochs=2)
    assert model.freezes_parameters and not FastRes(10).freezes_parameters
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    for epoch in (0, 1):
        assert model.epoch_start(epoch) is None
        step()
        assert model.whiten.bias.grad is not None
    line = model.epoch_start(2)
    assert line is not None and "whitening bias" in line
    gelu = model.act(model.whiten(x))
    assert not gelu.requires_grad  # nothing before the first convolution needs a gradient
    step()
    assert model.whiten.bias.grad is None and model.groups[0].conv1.weight.grad is not None
    assert model.epoch_start(3) is None and not model.whiten.bias.requires_grad
    assert model.epoch_start(0) is None and model.whiten.bias.requires_grad  # set, not latched
    assert FastRes(10).epoch_start(5) is None and FastRes(10).whiten.bias.requires_grad
    assert FastRes(10, whiten_bias_epochs=0).epoch_start(0) is not None
    for bad in (-1, 1.5, True, "three"):
        with pytest.raises(ValueError, match="whiten_bias_epochs"):
            FastRes(10, whiten_bias_epochs=bad)  # type: ignore[arg-type]
