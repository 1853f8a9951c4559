"""Whole-batch augmentations by name, each sample drawing its own random parameters.

A spec is a comma-separated list, applied in order, each name with optional ``:``-separated
numbers: ``crop:4,hflip,cutout:8`` or ``random-resized-crop:0.35:1,color-jitter:0.4:0.4:0.4:0.1``.

Every random op takes a batch (N, C, H, W) and a ``torch.Generator`` on the batch's device and
returns a batch of the same shape: no per-sample Python, a few tensor operations per batch on
whatever device trains. Three kinds:

- exact ops (crop, flips, cutout) move or zero whole pixels, so they run on the uint8 batch
  before it is converted to float: a quarter of the memory traffic;
- warps (rotate, affine, translate, random-resized-crop) are each an affine map of the output
  onto the input; consecutive warps are composed into one matrix per sample and resampled in
  one bilinear ``grid_sample`` call, so they cost one interpolation (one blur), not several;
- colour ops (color-jitter, grayscale, gaussian-blur) work on floats in [0, 1].

Every op keeps the size images were decoded at, so train and validation batches always agree;
that size is decoding's (`descend.data.geometry`: ``--image-size``, ``--resize``,
``--center-crop``), not augmentation's. ``normalize`` and ``to-tensor`` are accepted for readers
of torchvision pipelines: the loader always does both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from descend.data.geometry import OLD_NAMES
from descend.errors import ConfigError
from descend.registry import Registry

# ITU-R BT.601 luma, as torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


class BatchOp:
    """A random, size-preserving batch operation."""

    exact = False  # True: only moves or zeroes whole pixels, so it may run on uint8

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class Warp(BatchOp):
    """A random affine resampling; ``theta`` maps output to input in normalized coordinates.

    ``inside``: the map only reads inside the image (a crop), so samples at the outer half
    pixel take the edge pixel's value instead of blending in the black fill.
    """

    inside = False

    def theta(self, n: int, h: int, w: int, g: torch.Generator,
              device: torch.device) -> torch.Tensor:
        """(n, 3, 3) homogeneous matrices, ``affine_grid``'s convention (align_corners=False)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return warp(x, self.theta(x.shape[0], x.shape[2], x.shape[3], g, x.device), self.inside)


@dataclass(frozen=True)
class Marker:
    """``normalize`` / ``to-tensor``: always done by the loader; accepted, nothing to do."""

    name: str


Item = BatchOp | Marker
AUGMENTATIONS: Registry[Callable[..., Item]] = Registry("augmentation")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# --- exact ops: whole pixels, uint8 or float ----------------------------------------------------

@dataclass
class RandomCrop(BatchOp):
    """Random crop of the original size from the image padded by ``padding`` pixels: with
    zeros, or (``mode="reflect"``, airbench's) with the image's own edge pixels mirrored, so a
    shifted image keeps its texture to the border instead of a black band.

    One gather per batch: output pixel (n, c, i, j) reads padded pixel (n, c, dy_n + i,
    dx_n + j), with the flat index built once for all channels. A horizontal flip that follows
    is folded into the same index (column w - 1 - j for the flipped samples), drawing the same
    random numbers in the same order as the two ops apart, so the result is identical. On 512
    CIFAR-10 images on 2 CPU cores: about 1.4 ms for crop and flip together, against 2.9 ms
    for airbench-style passes of slices per shift value and a separate flip (benchmarks/B2.md).
    """

    padding: int = 4
    mode: str = "constant"  # F.pad's: "constant" (zeros) or "reflect"
    exact = True

    def __call__(self, x: torch.Tensor, g: torch.Generator,
                 hflip: float | torch.Tensor | None = None) -> torch.Tensor:
        """``hflip``: a following left-right flip folded in, by its probability or by which
        samples it mirrors (a bool per sample: `AlternatingFlip`)."""
        n, c, h, w = x.shape
        p = self.padding
        if p == 0:
            if isinstance(hflip, torch.Tensor):
                return mirror(x, hflip)
            return Flip(hflip)(x, g) if hflip is not None else x
        if self.mode == "reflect" and p >= min(h, w):
            raise ConfigError(f"reflect-crop:{p} mirrors {p} pixels of each edge, more than "
                              f"{h}x{w} images have: give at most {min(h, w) - 1}")
        width = w + 2 * p
        xp = F.pad(x, (p, p, p, p), mode=self.mode).view(n, c, (h + 2 * p) * width)
        dy = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=g, device=x.device)
        dx = torch.randint(0, 2 * p + 1, (n, 1, 1), generator=g, device=x.device)
        cols = torch.arange(w, device=x.device)[None, None, :]
        if hflip is not None:
            flip = (hflip if isinstance(hflip, torch.Tensor)
                    else torch.rand(n, generator=g, device=x.device) < hflip)
            cols = torch.where(flip[:, None, None], (w - 1) - cols, cols)
        rows = torch.arange(h, device=x.device)[None, :, None]
        index = ((dy + rows) * width + dx + cols).view(n, 1, h * w)
        return xp.gather(2, index.expand(n, c, h * w)).view(n, c, h, w)


@dataclass
class Flip(BatchOp):
    """Mirror each sample with probability ``p`` along ``dim`` (3: left-right, 2: up-down)."""

    p: float = 0.5
    dim: int = 3
    exact = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return mirror(x, torch.rand(x.shape[0], generator=g, device=x.device) < self.p, self.dim)


def mirror(x: torch.Tensor, which: torch.Tensor, dim: int = 3) -> torch.Tensor:
    """``x`` with the samples where ``which`` (bool, one per sample) is set flipped along
    ``dim``."""
    idx = torch.nonzero(which).flatten()
    return x.index_copy(0, idx, x.index_select(0, idx).flip(dim))


@dataclass
class AlternatingFlip(Flip):
    """airbench's alternating flip (Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds", section
    3.6): each image is mirrored in every other epoch, from a random first epoch, instead of at
    random in each. With ``m_i`` a fair coin drawn once per image, image i is mirrored in epoch
    e iff ``m_i xor (e mod 2)``: any two consecutive epochs show it both ways, where random
    flips show it the same way twice in half of them.

    The loader knows each sample's image and the epoch, and passes the mask
    (`Augment.run`'s ``mirrored``: `batching.AlternatingMirrors`); without it (a preview of the
    augmentation) this is a random flip with probability 1/2.
    """


@dataclass
class Cutout(BatchOp):
    """Zero a ``size`` x ``size`` square at a random centre (DeVries & Taylor, 2017).

    The square may reach past the border, as in the paper, so that edges are cut as often as
    the middle.
    """

    size: int = 8
    exact = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n, 1, 1), generator=g, device=x.device)
        cx = torch.randint(0, w, (n, 1, 1), generator=g, device=x.device)
        ys = torch.arange(h, device=x.device)[None, :, None] - cy
        xs = torch.arange(w, device=x.device)[None, None, :] - cx
        lo = self.size // 2
        hi = self.size - lo  # [centre - lo, centre + hi): exactly size pixels, even or odd
        hole = (ys >= -lo) & (ys < hi) & (xs >= -lo) & (xs < hi)
        return x.masked_fill(hole[:, None], 0)


# --- warps: one grid_sample per run of consecutive warps -----------------------------------------

def warp(x: torch.Tensor, theta: torch.Tensor, inside: bool = False) -> torch.Tensor:
    """Resample float ``x`` at ``theta`` (n, 3, 3), bilinear; outside the image: zeros (black,
    torchvision's fill), or the edge pixels when every sample lies ``inside``."""
    grid = F.affine_grid(theta[:, :2].to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border" if inside else "zeros",
                         align_corners=False)


def _pixel_affine(a: torch.Tensor, b: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Theta (n, 3, 3) of the map p_in = a p_out + b in pixels from the image centre.

    Normalized coordinates are pixels scaled by S = diag(2/w, 2/h), so theta = S a S^-1 with
    offset S b: a rotation stays a rotation on a non-square image.
    """
    n = a.shape[0]
    s = torch.tensor([2.0 / w, 2.0 / h], device=a.device)
    theta = torch.zeros(n, 3, 3, device=a.device)
    theta[:, :2, :2] = a * s[None, :, None] / s[None, None, :]
    theta[:, :2, 2] = b * s
    theta[:, 2, 2] = 1.0
    return theta


def _rotation(angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


@dataclass
class Affine(Warp):
    """Rotate by U(-degrees, degrees), scale by U(scale_min, scale_max), then shift by up to
    ``translate`` of the width and height: torchvision's RandomAffine without shear.

    The image moves forward by M = T R S, so the output samples the input at
    M^-1 p = S^-1 R^-1 (p - t).
    """

    degrees: float = 0.0
    translate: float = 0.0
    scale_min: float = 1.0
    scale_max: float = 1.0

    def __post_init__(self) -> None:
        _check(self.degrees >= 0, f"degrees must be 0 or more, got {self.degrees}")
        _check(0 <= self.translate <= 1, f"translate is a fraction in [0, 1], got {self.translate}")
        _check(0 < self.scale_min <= self.scale_max, "need 0 < scale_min <= scale_max")

    def theta(self, n: int, h: int, w: int, g: torch.Generator,
              device: torch.device) -> torch.Tensor:
        angle = _uniform(n, -self.degrees, self.degrees, g, device) * (math.pi / 180)
        scale = _uniform(n, self.scale_min, self.scale_max, g, device)
        t = torch.stack([_uniform(n, -self.translate, self.translate, g, device) * w,
                         _uniform(n, -self.translate, self.translate, g, device) * h], -1)
        inverse = _rotation(-angle) / scale[:, None, None]
        return _pixel_affine(inverse, -(inverse @ t[:, :, None])[:, :, 0], h, w)


@dataclass
class RandomResizedCrop(Warp):
    """A crop of U(scale) of the area with log-uniform aspect ratio, resized to the full size.

    As torchvision's RandomResizedCrop: up to 10 draws per sample, the first that fits the
    image wins; a sample with none takes the whole image.
    """

    scale_min: float = 0.08
    scale_max: float = 1.0
    ratio_min: float = 3 / 4
    ratio_max: float = 4 / 3
    tries = 10
    inside = True

    def __post_init__(self) -> None:
        _check(0 < self.scale_min <= self.scale_max <= 1, "need 0 < scale_min <= scale_max <= 1")
        _check(0 < self.ratio_min <= self.ratio_max, "need 0 < ratio_min <= ratio_max")

    def theta(self, n: int, h: int, w: int, g: torch.Generator,
              device: torch.device) -> torch.Tensor:
        k = self.tries
        area = _uniform(n * k, self.scale_min, self.scale_max, g, device).view(n, k) * (h * w)
        log_r = _uniform(n * k, math.log(self.ratio_min), math.log(self.ratio_max), g, device)
        ratio = log_r.view(n, k).exp()
        cw, ch = (area * ratio).sqrt(), (area / ratio).sqrt()
        fits = (cw <= w) & (ch <= h)
        first = fits.float().argmax(1, keepdim=True)  # the first try that fits (0 if none does)
        any_fit = fits.any(1)
        cw = torch.where(any_fit, cw.gather(1, first)[:, 0], torch.full_like(cw[:, 0], w))
        ch = torch.where(any_fit, ch.gather(1, first)[:, 0], torch.full_like(ch[:, 0], h))
        # centre anywhere the crop stays inside: offset from the image centre U(-(w-cw)/2, ..)
        u = torch.rand(2, n, generator=g, device=device) - 0.5
        centre = torch.stack([u[0] * (w - cw), u[1] * (h - ch)], -1)
        a = torch.diag_embed(torch.stack([cw / w, ch / h], -1))
        return _pixel_affine(a, centre, h, w)


# --- colour ops: floats in [0, 1] ---------------------------------------------------------------

def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma (n, 1, h, w) of RGB floats."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """other + factor (x - other), clamped: torchvision's _blend, one factor per sample."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 1)


# RGB -> YIQ: the chroma plane (I, Q) rotates under a hue shift; Y (luma) stays.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@dataclass
class ColorJitter(BatchOp):
    """Brightness, contrast, saturation and hue, each factor drawn per sample, in that order.

    brightness: x * f; contrast: blend with the image's mean grey; saturation: blend with its
    grey image; f ~ U(max(0, 1 - v), 1 + v). Hue: a rotation of the chroma plane in YIQ space
    by U(-hue, hue) turns, a linear stand-in for torchvision's HSV hue shift (the same as
    it for greys, close for colours, and one batched 3x3 matrix product instead of an HSV round
    trip).
    """

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1

    def __post_init__(self) -> None:
        _check(min(self.brightness, self.contrast, self.saturation) >= 0,
               "brightness, contrast and saturation must be 0 or more")
        _check(0 <= self.hue <= 0.5, f"hue is in turns, in [0, 0.5], got {self.hue}")

    def _factor(self, v: float, n: int, g: torch.Generator,
                device: torch.device) -> torch.Tensor:
        return _uniform(n, max(0.0, 1 - v), 1 + v, g, device)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        if self.brightness:
            x = (x * self._factor(self.brightness, n, g, x.device).view(-1, 1, 1, 1)).clamp_(0, 1)
        if self.contrast:
            grey = _grey(x) if c == 3 else x
            mean = grey.mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean, self._factor(self.contrast, n, g, x.device))
        if c != 3:
            return x
        if self.saturation:
            x = _blend(x, _grey(x), self._factor(self.saturation, n, g, x.device))
        if self.hue:
            angle = _uniform(n, -self.hue, self.hue, g, x.device) * (2 * math.pi)
            yiq = _YIQ.to(x.device)
            rot = torch.eye(3, device=x.device).repeat(n, 1, 1)
            rot[:, 1:, 1:] = _rotation(angle)
            m = torch.linalg.inv(yiq) @ rot @ yiq
            x = torch.bmm(m, x.flatten(2)).view_as(x).clamp_(0, 1)
        return x


@dataclass
class Grayscale(BatchOp):
    """With probability ``p``, replace a sample by its luma on every channel."""

    p: float = 0.1

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        pick = torch.rand(x.shape[0], generator=g, device=x.device) < self.p
        if x.shape[1] != 3:
            return x
        return torch.where(pick.view(-1, 1, 1, 1), _grey(x).expand_as(x), x)


@dataclass
class GaussianBlur(BatchOp):
    """Blur by a ``kernel`` x ``kernel`` Gaussian with sigma ~ U(sigma_min, sigma_max) per
    sample; separable, as two grouped convolutions with one kernel per sample and channel.
    Edges are reflected, as torchvision does."""

    kernel: int = 3
    sigma_min: float = 0.1
    sigma_max: float = 2.0

    def __post_init__(self) -> None:
        _check(self.kernel >= 1 and self.kernel % 2 == 1,
               f"the kernel size must be odd, got {self.kernel}")
        _check(0 < self.sigma_min <= self.sigma_max, "need 0 < sigma_min <= sigma_max")

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        sigma = _uniform(n, self.sigma_min, self.sigma_max, g, x.device)
        k, r = self.kernel, self.kernel // 2
        if r == 0:
            return x
        d = torch.arange(k, device=x.device, dtype=x.dtype) - r
        kern = torch.exp(-d[None] ** 2 / (2 * sigma[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n * c, k)
        y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
        y = F.conv2d(y, kern.view(n * c, 1, k, 1), groups=n * c)
        y = F.conv2d(y, kern.view(n * c, 1, 1, k), groups=n * c)
        return y.view(n, c, h, w)


# --- the registry -------------------------------------------------------------------------------

def _int(v: float, what: str) -> int:
    _check(v == int(v) and v >= 0, f"{what} must be a whole number of pixels, got {v}")
    return int(v)


def _prob(p: float) -> float:
    _check(0 <= p <= 1, f"a probability must be in [0, 1], got {p}")
    return p


def _register(*names: str) -> Callable[[Callable[..., Item]], Callable[..., Item]]:
    def add(factory: Callable[..., Item]) -> Callable[..., Item]:
        for name in names:
            AUGMENTATIONS.register(name)(factory)
        return factory

    return add


@_register("crop", "random-crop")
def _crop(padding: float = 4) -> Item:
    """crop:P: random crop of the original size after zero padding by P pixels (default 4)."""
    return RandomCrop(_int(padding, "crop padding"))


@_register("reflect-crop")
def _reflect_crop(padding: float = 4) -> Item:
    """reflect-crop:P: random crop of the original size after padding by P pixels with the
    image's edges mirrored (airbench's translation; at most the image's side less one)."""
    return RandomCrop(_int(padding, "crop padding"), mode="reflect")


@_register("hflip", "horizontal-flip")
def _hflip(p: float = 0.5) -> Item:
    """hflip:P: mirror left-right with probability P (default 0.5)."""
    return Flip(_prob(p), 3)


@_register("alternating-flip", "alt-flip")
def _alternating_flip() -> Item:
    """alternating-flip: mirror left-right in every other epoch, from a random first epoch per
    image (airbench)."""
    return AlternatingFlip()


@_register("vflip", "vertical-flip")
def _vflip(p: float = 0.5) -> Item:
    """vflip:P: mirror up-down with probability P (default 0.5)."""
    return Flip(_prob(p), 2)


@_register("cutout")
def _cutout(size: float = 8) -> Item:
    """cutout:S: zero an S x S square at a random place (default 8)."""
    return Cutout(_int(size, "cutout size"))


@_register("rotate", "rotation")
def _rotate(degrees: float = 15) -> Item:
    """rotate:D: rotate by U(-D, D) degrees (default 15)."""
    return Affine(degrees=degrees)


@_register("affine")
def _affine(degrees: float = 0, translate: float = 0.1, scale_min: float = 1,
            scale_max: float = 1) -> Item:
    """affine:D:T:S0:S1: rotate U(-D, D), shift up to T of the size, scale U(S0, S1)."""
    return Affine(degrees, translate, scale_min, scale_max)


@_register("translate")
def _translate(fraction: float = 0.1) -> Item:
    """translate:T: shift by up to T of the width and height (default 0.1)."""
    return Affine(translate=fraction)


@_register("random-resized-crop")
def _rrc(scale_min: float = 0.08, scale_max: float = 1.0, ratio_min: float = 3 / 4,
         ratio_max: float = 4 / 3) -> Item:
    """random-resized-crop:S0:S1:R0:R1: area share U(S0, S1), aspect log-U(R0, R1)."""
    return RandomResizedCrop(scale_min, scale_max, ratio_min, ratio_max)


@_register("color-jitter")
def _jitter(brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
            hue: float = 0.1) -> Item:
    """color-jitter:B:C:S:H (defaults 0.4:0.4:0.4:0.1)."""
    return ColorJitter(brightness, contrast, saturation, hue)


@_register("grayscale")
def _grayscale(p: float = 0.1) -> Item:
    """grayscale:P: to grey with probability P (default 0.1)."""
    return Grayscale(_prob(p))


@_register("gaussian-blur")
def _blur(kernel: float = 3, sigma_min: float = 0.1, sigma_max: float = 2.0) -> Item:
    """gaussian-blur:K:S0:S1: K x K kernel, sigma U(S0, S1) (defaults 3:0.1:2)."""
    return GaussianBlur(_int(kernel, "blur kernel"), sigma_min, sigma_max)


@_register("normalize")
def _normalize() -> Item:
    """normalize: always done by the loader (with --mean/--std or the training split's)."""
    return Marker("normalize")


@_register("to-tensor")
def _to_tensor() -> Item:
    """to-tensor: always done; batches are float tensors on the device."""
    return Marker("to-tensor")


# --- a parsed spec ------------------------------------------------------------------------------

@dataclass
class Augment:
    """A parsed spec: the batch ops and the text they came from."""

    spec: str
    ops: list[BatchOp] = field(default_factory=list)

    def mirrors(self) -> bool:
        """Whether the ops mirror images left-right."""
        return any(isinstance(op, Flip) and op.dim == 3 for op in self.ops)

    def shifts(self) -> bool:
        """Whether the ops shift images by whole pixels (random crops of a padded image)."""
        return any(isinstance(op, RandomCrop) and op.padding for op in self.ops)

    def alternates(self) -> bool:
        """Whether an op mirrors in alternate epochs (its loader passes which samples)."""
        return any(isinstance(op, AlternatingFlip) for op in self.ops)

    def run(self, x: torch.Tensor, g: torch.Generator,
            mirrored: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the ops; uint8 in stays uint8 while every op so far is exact, else float [0, 1].
        ``mirrored``: which samples (bool) an `AlternatingFlip` mirrors in this batch.

        The loader feeds uint8 and folds the conversion into normalization.
        """
        i, ops = 0, self.ops
        if x.dtype == torch.uint8:
            while i < len(ops) and ops[i].exact:
                op, nxt = ops[i], ops[i + 1] if i + 1 < len(ops) else None
                if isinstance(op, RandomCrop) and isinstance(nxt, Flip) and nxt.dim == 3:
                    # crop and flip in one gather
                    x = op(x, g, hflip=self._flip(nxt, mirrored))
                    i += 2
                else:
                    x = self._one(op, x, g, mirrored)
                    i += 1
            if i == len(ops):
                return x
            x = x.float().div_(255.0)
        while i < len(ops):
            op = ops[i]
            if isinstance(op, Warp):
                n, _, h, w = x.shape
                theta, inside = op.theta(n, h, w, g, x.device), op.inside
                i += 1
                while i < len(ops) and isinstance(ops[i], Warp):
                    nxt = ops[i]
                    assert isinstance(nxt, Warp)
                    # output -> input of the later warp, then of the earlier: theta_1 theta_2
                    theta = theta @ nxt.theta(n, h, w, g, x.device)
                    inside = inside and nxt.inside
                    i += 1
                x = warp(x, theta, inside)
            else:
                x = self._one(ops[i], x, g, mirrored)
                i += 1
        return x

    @staticmethod
    def _flip(op: Flip, mirrored: torch.Tensor | None) -> float | torch.Tensor:
        """What a flip folded into a crop mirrors: the loader's mask for an alternating one."""
        return mirrored if isinstance(op, AlternatingFlip) and mirrored is not None else op.p

    @staticmethod
    def _one(op: BatchOp, x: torch.Tensor, g: torch.Generator,
             mirrored: torch.Tensor | None) -> torch.Tensor:
        if isinstance(op, AlternatingFlip) and mirrored is not None:
            return mirror(x, mirrored, op.dim)
        return op(x, g)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The augmented batch as floats in [0, 1] (uint8 input is scaled by 1/255)."""
        out = self.run(x, g)
        return out.float().div_(255.0) if out.dtype == torch.uint8 else out


def parse_augment(spec: str | None) -> Augment:
    """Parse ``"crop:4,hflip"``; ``""``, ``"none"`` or None mean no augmentation."""
    spec = (spec or "").strip()
    if spec.lower() in ("", "none"):
        return Augment("none")
    out = Augment(spec)
    for item in spec.split(","):
        name, _, args = item.strip().partition(":")
        if name.strip() in OLD_NAMES:  # parse_augment's callers split the 0.1 spelling off first
            flag = "--" + OLD_NAMES[name.strip()].replace("_", "-")
            raise ConfigError(f"{name.strip()} is how images are decoded, not an augmentation: "
                              f"give it as {flag} N")
        factory = AUGMENTATIONS.get(name.strip())
        try:
            values = [float(a) for a in args.split(":") if a.strip()] if args else []
            made = factory(*values)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad augmentation {item!r}: {e}; example: crop:4,hflip "
                              f"({factory.__doc__ or ''})") from None
        if isinstance(made, BatchOp):
            out.ops.append(made)
    return out
