import pytest
import torch

from descend.errors import ConfigError
from descend.models import ModelSpec, create_model
from descend.models.registry import MODELS, model_names


@pytest.mark.parametrize("name, channels, size", [
    ("mlp", 3, (32, 32)), ("mlp", 1, (28, 28)), ("cnn", 3, (32, 32)), ("cnn", 1, (28, 28)),
    ("cnn", 3, (64, 48)), ("tv:resnet18", 1, (28, 28)), ("tv:mobilenet_v3_small", 3, (32, 32)),
])
def test_models_take_the_data_shape(name: str, channels: int, size: tuple[int, int]) -> None:
    model = create_model(ModelSpec(name, 7, channels, size)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, *size))
    assert out.shape == (2, 7)


def test_mlp_is_the_seeds_mynet() -> None:
    model = create_model(ModelSpec("mlp", 10, 3, (32, 32)))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3072, 1024), (1024, 512), (512, 256), (256, 64), (64, 10)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 4


def test_model_arguments_pass_through() -> None:
    model = create_model(ModelSpec("cnn", 10, 3, (32, 32), {"widths": [8, 16, 32]}))
    assert model.head[-1].in_features == 32
    with pytest.raises(ConfigError, match="bad arguments for model 'cnn'"):
        create_model(ModelSpec("cnn", 10, 3, (32, 32), {"depth": 3}))
    for absurd in ({"widths": [-8, 16, 32]}, {"dropout": 2.0}, {"widths": "wide"}):
        with pytest.raises(ConfigError, match="bad arguments for model"):  # no traceback
            create_model(ModelSpec("cnn" if "widths" in absurd else "mlp", 10, 3, (32, 32),
                                   absurd))


def test_unknown_names_list_the_valid_ones() -> None:
    known = ", ".join(sorted(MODELS))  # every model registered by name, so a new one too
    with pytest.raises(ConfigError, match=known):
        create_model(ModelSpec("resnet", 10, 3, (32, 32)))
    with pytest.raises(ConfigError, match="resnet18"):
        create_model(ModelSpec("tv:resnet", 10, 3, (32, 32)))
    assert "mlp" in model_names()


def test_entries_carry_factory_recipe_and_weights_and_the_help_comes_from_them() -> None:
    from descend.models import MODELS, is_torchvision_name
    from descend.models.fastres import RECIPE, FastRes
    from descend.models.registry import models_help, recipe_help, weights_help

    assert MODELS.get("fastres").factory is FastRes and MODELS.get("fastres").recipe is RECIPE
    assert MODELS.get("efficientnet_lite0").weights and not MODELS.get("cnn").weights
    assert is_torchvision_name("tv:resnet18") and not is_torchvision_name("fastres")
    assert not is_torchvision_name(None)
    help_text = models_help()
    for name in MODELS:
        assert name in help_text or name.rstrip("012") in help_text
    assert help_text.startswith("fastres, cnn") and "tv:NAME" in help_text
    assert "tv:NAME (torchvision's" in weights_help()
    assert recipe_help("label_smoothing") == f"{RECIPE.label_smoothing} for fastres, else 0.1"
    assert recipe_help("peak_lr").startswith(f"{RECIPE.peak_lr} for fastres")
