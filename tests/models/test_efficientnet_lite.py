"""The pretrained EfficientNet-Lite backbones: the weights packages' tensors land in timm's
network by the explicit name map, the logits agree with the reference package, and real
photos get their ImageNet class."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from descend.errors import ConfigError
from descend.models import ModelSpec, create_model
from descend.models import efficientnet_lite as lite

pytestmark = pytest.mark.skipif(not lite.installed(),
                                reason="descend[pretrained] (timm, the weights packages) is not "
                                "installed")


def imagenet_model(name: str) -> torch.nn.Module:
    model = create_model(ModelSpec(name, 1000, 3, (224, 224)))
    model.load_state_dict(lite.imagenet_state_dict(name))
    return model.eval()


@pytest.mark.parametrize("name", sorted(lite.BACKBONES))
def test_logits_agree_with_the_reference_package(name: str) -> None:
    """Tolerance: 1e-4 absolute on logits of magnitude up to about 7 (measured: 0.0, the
    same float32 operations in the same order)."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    weights = importlib.import_module(lite.BACKBONES[name].package)
    model_file = next(getattr(weights, a) for a in dir(weights) if a.endswith("ModelFile"))
    reference = reference_package.EfficientNet.from_pretrained(
        name.replace("_", "-"), weights_path=model_file.get_model_file_path()).eval()
    size = lite.BACKBONES[name].image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = imagenet_model(name)(x), reference(x)
    assert theirs.abs().max() > 1  # real logits, not an untrained head's
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def photo(name: str, backbone: lite.Backbone) -> torch.Tensor:
    """A photo scikit-image ships, decoded as descend decodes: the shorter side scaled to
    ``resize``, the centre ``image_size`` square, then [-1, 1]."""
    data = pytest.importorskip("skimage.data")
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    scale = backbone.resize / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.Resampling.BICUBIC)
    left, top = (image.width - backbone.image_size) // 2, (image.height - backbone.image_size) // 2
    image = image.crop((left, top, left + backbone.image_size, top + backbone.image_size))
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    return (pixels - 0.5) / 0.5


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
@pytest.mark.parametrize(("image", "expected"), [
    ("chelsea", "tabby, tabby cat"), ("coffee", "espresso"), ("rocket", "missile"),
])
def test_real_photos_get_their_imagenet_class_in_the_top_five(name: str, image: str,
                                                              expected: str) -> None:
    model = imagenet_model(name)
    with torch.no_grad():
        top = model(photo(image, lite.BACKBONES[name])).topk(5).indices[0].tolist()
    classes = lite.imagenet_classes()
    assert expected in [classes[i] for i in top], [classes[i] for i in top]


def test_a_tensor_the_name_map_does_not_know_is_refused() -> None:
    blocks = ["blocks.0.0", "blocks.1.0"]
    assert lite.timm_name("_blocks.1._expand_conv.weight", blocks, {0}) == \
        "blocks.1.0.conv_pw.weight"
    assert lite.timm_name("_blocks.0._project_conv.weight", blocks, {0}) == \
        "blocks.0.0.conv_pw.weight"
    assert lite.timm_name("_bn1.running_var", blocks, {0}) == "bn2.running_var"
    for key in ("_blocks.0._expand_conv.weight", "_blocks.9._bn0.weight", "fc.weight"):
        with pytest.raises(ConfigError, match="name map"):
            lite.timm_name(key, blocks, {0})


def test_a_weights_file_with_another_hash_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = lite.Backbone(**{**lite.BACKBONES["efficientnet_lite0"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(lite.BACKBONES, "efficientnet_lite0", wrong)
    with pytest.raises(ConfigError, match="SHA-256"):
        lite.imagenet_state_dict("efficientnet_lite0")


def test_grey_images_are_repeated_to_three_channels() -> None:
    model = create_model(ModelSpec("efficientnet_lite0", 4, 1, (64, 64))).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 4)
        assert model.features(torch.zeros(2, 1, 64, 64)).shape == (2, 1280)
