"""The fast residual net: descend's default model, built for time to accuracy on small images.

Its shape follows the fastest public CIFAR-10 recipes (Keller Jordan's airbench, after David
Page's ResNet-9), scaled to what a CPU trains in minutes::

    whiten  2x2 patch convolution, fixed to the inverse square root of the training patches'
            covariance (eigenvectors / sqrt(eigenvalue)), both signs, then GELU
    group   conv3x3 -> max-pool /2 -> BN -> GELU -> [conv3x3 -> BN -> GELU] + skip   (x3)
    head    global max-pool -> linear (no bias) -> logits x scale

Why each choice:

- whitening: the first layer starts decorrelated, as if trained; its weights stay fixed (they
  carry no gradient) and only its bias learns. Worth a few epochs on short runs.
- pooling before BN and GELU: the normalisation and activation run on a quarter of the pixels.
- the residual branch (as in ResNet-9's layers): the second convolution of a group learns a
  correction to its input, which trains faster and tolerates larger learning rates. Without it
  (airbench94's plain conv-conv), 10 epochs of 64-256-256 reached 92.52% against 93.26%, for
  7% less time an epoch (BENCHMARKS.md B18).
- the whitening layer's bias trains for the first `WHITEN_BIAS_EPOCHS` epochs, then stops
  (airbench's schedule; ``whiten_bias_epochs``, None: throughout). Nothing before it then
  needs a gradient, so each later step skips the backward of the first two layers: the GELU
  of the 24 whitened channels at full resolution and the input gradient of the first
  convolution, the costliest of the net in float32. On a 2-core AVX2 EPYC, a step of 16-32-64
  took 91-92 ms against 116-122 ms (32-64-128: 215-231 against 244-267; bfloat16 64-256-256 on
  an AMX Xeon, 42.4 s an epoch against 44.0). 14 epochs of 16-32-64 with it reached 88.33%
  in 280 s of steps, against 87.62% in 265 s for 12 epochs trained throughout and 87.78% in
  261 s with the bias never trained (seed 0, B18); 5-minute budgets on that CPU gave 87.89
  and 87.48% against 87.36 and 87.41% (seeds 0-1, B3). At equal epochs, 10 of 64-256-256
  gave 93.09% against 93.26% (one seed, a tie).
- batch norm with a fixed scale of 1 (only the shift learns; a scale in front of a max-pool and
  a linear layer is redundant) and a faster running-average momentum (0.4 rather than 0.1),
  so the statistics used for validation keep up with weights that move quickly on short runs.
- ``scale`` on the logits keeps the initial softmax near uniform, so early steps are not
  spent undoing confident random guesses.
- ``tta`` (test-time augmentation, in eval mode only): level 1 averages the logits of the
  image and its mirror image; level 2 (airbench's) adds, at half the weight, the mirrored
  pairs of the image shifted one pixel up-left and one down-right (reflect padding): six
  passes instead of two. The training recipe picks the level the training augmentation
  allows (mirroring for 1, mirroring and random shifts for 2), so test images stay in the
  distribution the model was trained on; evaluation, prediction, serving and export all get
  it, because it lives in the model. Level 2 was worth +0.21 to +0.38 points of CIFAR-10 test
  accuracy over level 1 on each of four 4-epoch 32-64-128 runs (BENCHMARKS.md B3), and +0.25
  on the mean of three 16-epoch 64-256-256 runs, where no wider set of views (4 or 8
  neighbours, shifts of 2 pixels) added more than 0.02 (B18).

``dirac`` (off; airbench's) starts the first ``in_channels`` filters of each convolution as the
identity. Measured and not adopted: 88.88% against the recipe's 89.17% at 5 epochs of 32-64-128
(BENCHMARKS.md B18), within the run-to-run spread.

``widths`` defaults to (16, 32, 64): eight epochs of CIFAR-10 take minutes on two CPU cores.
``--time-budget`` picks a wider net from `RECIPE`'s ladder when the budget leaves time for
enough epochs of it (`descend.training.planning.probes.fit_widths`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from descend.data.augment import parse_augment
from descend.models.registry import Recipe, register
from descend.models.small_maps import SmallMapConv2d

PATCH = 2  # side of the whitened patches
WHITEN_BIAS_EPOCHS = 3  # the recipe's: airbench's, measured above
BN_MOMENTUM = 0.4  # torch's convention: the weight of the newest batch in the running stats


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm with its scale fixed at 1: only the shift is a trained parameter."""
    bn = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU, then a residual conv -> BN -> GELU."""

    def __init__(self, ci: int, co: int) -> None:
        super().__init__()
        self.conv1 = SmallMapConv2d(ci, co)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = batch_norm(co)
        self.conv2 = SmallMapConv2d(co, co)
        self.bn2 = batch_norm(co)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return x + self.act(self.bn2(self.conv2(x)))


def tta_args(augment: str | None) -> dict[str, int]:
    """The test-time augmentation a training ``--augment`` allows: 2 where it mirrors and
    shifts images, 1 where it mirrors alone, else 0 (test images then stay in the distribution
    the model was trained on)."""
    ops = parse_augment(augment)
    return {"tta": (2 if ops.shifts() else 1) if ops.mirrors() else 0}


def recipe_args(augment: str | None) -> dict[str, int]:
    """The recipe's model arguments: the test-time augmentation ``augment`` allows
    (`tta_args`) and the whitening bias's epochs."""
    return {**tta_args(augment), "whiten_bias_epochs": WHITEN_BIAS_EPOCHS}


# What the recipe keeps against airbench94_muon's choices, measured by accuracy at equal epochs
# (BENCHMARKS.md B18). 32-64-128, 5 epochs, seed 0 (about 0.5 points apart run to run): Muon on
# the filters (89.0-89.3% at lr 0.2-0.3, partner rates 1-10x, one-cycle or linear decay) ties
# Nesterov's 89.17%; batch 512 loses 0.5-0.9 points, a weight decay of 1e-3 or 2e-3 loses 0.7 or
# 1.4, an EMA of the weights 0.3. 64-256-256, 10 epochs, 3 seeds: Muon (lr 0.3, linear decay,
# partner x3.3) 93.33% against 93.12%, ahead on each seed, at 8% more time an epoch. The recipe
# stays Nesterov until budgeted runs (B3) show that lead survives its cost.
RECIPE = Recipe(
    # fastres divides its logits by 9, so its weights see smaller gradients: one epoch of
    # CIFAR-10 reached 66.6% at 0.2, 72.4% at 0.8, 72.3% at 2 and 72.0% at 5 (widths 16-32-64,
    # one-cycle), and four epochs 83.9% at 1.0 against 83.0% at 0.4.
    peak_lr=1.0,
    # airbench's value for its runs of about ten epochs (not re-tuned here): smoothing keeps
    # the scaled logits from chasing certainty on images they already get right.
    label_smoothing=0.2,
    # Half the ResNet recipes' 5e-4: 10 epochs of 64-256-256 reached 93.48, 93.24 and 93.29%
    # (seeds 0-2) against 93.26, 93.03 and 93.06% at 5e-4, ahead on every seed and at every
    # epoch after the first (BENCHMARKS.md B18); 1e-4 gave 93.44% on seed 0, no better.
    weight_decay=2.5e-4,
    # Shifts of 2 pixels, not 4: a short run has no time to learn from heavy augmentation
    # (airbench translates by 2). airbench's alternating flip, not a random one: 10 epochs of
    # 64-256-256 reached 93.47, 93.32 and 93.52% (seeds 0-2) against 93.48, 93.24 and 93.29%
    # (BENCHMARKS.md B18). The shifted-in edge mirrored, not zeros (airbench's): 16 epochs of
    # 64-256-256 reached 94.13, 94.16 and 94.18% (seeds 0-2) against 94.23, 93.95 and 93.93%
    # with zero padding, +0.12 on the mean and at least 94% on every seed (B18).
    augment="reflect-crop:2,alternating-flip",
    # Narrowest first. With a budget and no --model-arg widths, a run takes the widest that
    # still fits the epochs its rung needs (min_epochs, one per rung): a one-cycle run of fewer
    # epochs leaves a wider net short of what it can reach, so on short budgets more epochs of
    # a narrower net win. The last is airbench94's own shape, for budgets that fit ten epochs
    # of it.
    widths=((8, 16, 32), (16, 32, 64), (32, 64, 128), (64, 128, 256), (64, 256, 256)),
    # Narrow nets are limited by their size, not by their epochs, so they need fewer: on the
    # AVX2 EPYC (float32, seed 0, B3), 2 minutes gave 16-32-64 5 epochs, 85.12%, against 9
    # epochs of 8-16-32, 80.74%; 5 minutes gave 32-64-128 6 epochs, 89.16%, against 14 of
    # 16-32-64, 87.89% (8 of 24-48-96: 88.73%); 4 epochs of 32-64-128 reached 88.03% (bf16
    # EPYC, B3), about what the 10-11 epochs of 16-32-64 in the same time reach. The probe
    # times a step before the whitening bias stops training, so it counts about 10% fewer
    # epochs than the run trains. The wide rungs need 7: 5 minutes on the bf16 EPYC fit 5-6
    # epochs of 64-256-256 (91.21, 91.52, 91.38%) or 8-9 of 64-128-256 (92.15, 92.01%). The
    # first rung's figure is never read (the ladder starts there).
    min_epochs=(4, 4, 4, 7, 7),
    model_args=recipe_args,
)


@register("fastres", RECIPE)
class FastRes(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: Sequence[int] = (32, 32),
        widths: Sequence[int] = (16, 32, 64),
        scale: float = 1 / 9,
        tta: int = 0,
        dirac: bool = False,
        whiten_bias_epochs: int | None = None,
    ) -> None:
        super().__init__()
        w = [int(v) for v in widths]
        if len(w) != 3 or min(w) < 1:
            raise ValueError(f"widths needs three positive numbers, got {list(widths)}")
        if min(image_size) < 8 * PATCH:
            raise ValueError(f"images of {image_size[0]}x{image_size[1]} are too small for three "
                             f"pooling stages; use images of at least {8 * PATCH} pixels")
        whitened = 2 * in_channels * PATCH * PATCH  # every eigen-direction, both signs
        self.whiten = nn.Conv2d(in_channels, whitened, PATCH, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        self.groups = nn.Sequential(ConvGroup(whitened, w[0]), ConvGroup(w[0], w[1]),
                                    ConvGroup(w[1], w[2]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(w[2], num_classes, bias=False)
        if int(tta) not in (0, 1, 2):
            raise ValueError(f"tta is a level, 0 (none), 1 (mirror) or 2 (mirror and 1-pixel "
                             f"shifts), got {tta!r}")
        self.scale, self.tta = float(scale), int(tta)  # a checkpoint's True/False is 1/0
        n = whiten_bias_epochs
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float))
                              or n != int(n) or n < 0):
            raise ValueError(f"whiten_bias_epochs is a number of epochs, 0 or more (or None: "
                             f"the bias trains throughout), got {whiten_bias_epochs!r}")
        self.whiten_bias_epochs = None if whiten_bias_epochs is None else int(whiten_bias_epochs)
        if dirac:  # airbench's: the first filters of each conv start as the identity
            with torch.no_grad():
                for m in self.groups.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.dirac_(m.weight[:m.in_channels])

    @property
    def freezes_parameters(self) -> bool:
        """Whether `epoch_start` stops some parameters training during a run (under torchrun,
        DistributedDataParallel must then expect parameters without a gradient)."""
        return self.whiten_bias_epochs is not None

    def epoch_start(self, epoch: int) -> str | None:
        """Set which parameters train in epoch ``epoch`` (0-based): the whitening bias for the
        first ``whiten_bias_epochs``, then no more. A line for the log where it stops."""
        if self.whiten_bias_epochs is None:
            return None
        assert self.whiten.bias is not None  # built with one
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)
        if epoch == self.whiten_bias_epochs:
            return (f"fastres: the whitening bias stops training after {epoch} epoch(s) "
                    "(whiten_bias_epochs): the steps skip the first layers' backward")
        return None

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalized training images (N, C, H, W).

        With S the covariance of the PATCH x PATCH patches (C * PATCH^2 dimensions) and
        S = V diag(l) V^T, the filters are the rows of diag(1 / sqrt(l + eps)) V^T and their
        negatives: the patches come out decorrelated with unit variance.
        """
        c = self.whiten.in_channels
        patches = images.float().unfold(2, PATCH, 1).unfold(3, PATCH, 1)  # N C H' W' p p
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * PATCH * PATCH).double()
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / (eigenvalues.clamp(min=0) + eps).sqrt()[:, None]).float()
        filters = filters.reshape(-1, c, PATCH, PATCH)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.act(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.scale

    def mirrored(self, x: torch.Tensor) -> torch.Tensor:
        """The mean logits of ``x`` and its mirror image."""
        return (self.logits(x) + self.logits(x.flip(-1))) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.tta:
            return self.logits(x)
        if self.tta == 1:
            return self.mirrored(x)
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = self.mirrored(padded[..., :-2, :-2]) + self.mirrored(padded[..., 2:, 2:])
        return self.mirrored(x) / 2 + shifted / 4
