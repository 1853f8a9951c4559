"""A convolution whose weight gradient is fast on the small feature maps of a CPU net.

With y = conv(x, W) at stride 1 and padding p, the weight gradient is

    dW[o, i, u, v] = sum over n, h, w of dy[n, o, h, w] * x_pad[n, i, h + u, w + v]

which is itself a convolution: of x with the batch as its channels, (i, n, H, W), by the
filters dy, (o, n, H', W'), at the same padding. oneDNN's own weight-gradient kernel is slow
when the maps are a few pixels wide and the channels many: at 3x3 maps, 256 channels in and
out and a batch of 256 (fastres's last group), it took 11.2 ms in bfloat16 on an AMX Xeon
against 2.5 ms for the convolution above, and 1.5 ms for the forward pass
(BENCHMARKS.md B19). At 7x7 maps the native kernel is faster (19 ms against 47), so the
batch-as-channels form is used only where the maps are at most `SMALL_MAP` pixels a side,
in bfloat16, on the CPU, while training. The forward pass and the input's gradient are
torch's own, and the layer is an `nn.Conv2d` in every other respect (its state dict, its
export, its optimizer groups).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP = 4  # the largest map side (pixels) where the batch-as-channels gradient is faster


class _BatchAsChannelsConv(torch.autograd.Function):
    """conv2d (stride 1, groups 1) whose backward computes dW as a convolution over the batch."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
        dtype = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                 else x.dtype)
        xc, wc = x.to(dtype), weight.to(dtype)  # as autocast would cast them for conv2d
        ctx.save_for_backward(xc, wc)
        ctx.padding, ctx.dtypes = padding, (x.dtype, weight.dtype)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(xc, wc, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xc, wc = ctx.saved_tensors
        p = ctx.padding
        grad = grad.to(xc.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(  # torch's own input gradient
                grad, xc, wc, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                [True, False, False])[0].to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            grad_w = weight_gradient_by_batch(xc, grad, p).to(ctx.dtypes[1])
        return grad_x, grad_w, None


def weight_gradient_by_batch(x: torch.Tensor, grad: torch.Tensor, padding: int) -> torch.Tensor:
    """dW of a stride-1 convolution of ``x`` whose output gradient is ``grad``: the convolution
    of x as (in, batch, H, W) by grad as (out, batch, H', W'), transposed to (out, in, kh, kw)."""
    return F.conv2d(x.transpose(0, 1).contiguous(), grad.transpose(0, 1).contiguous(),
                    padding=padding).transpose(0, 1)


class SmallMapConv2d(nn.Conv2d):
    """A square, stride-1, bias-free `nn.Conv2d` that trains faster on small maps on the CPU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and torch.is_grad_enabled() and x.device.type == "cpu"
                and max(x.shape[-2:]) <= SMALL_MAP and in_bfloat16(x)
                and not torch.compiler.is_compiling()):
            return batch_as_channels_conv(x, self.weight, int(self.padding[0]))
        return super().forward(x)


def batch_as_channels_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=padding)`` (stride 1), whose weight gradient is computed
    as a convolution with the batch as its channels."""
    out: torch.Tensor = _BatchAsChannelsConv.apply(x, weight, padding)
    return out


def in_bfloat16(x: torch.Tensor) -> bool:
    """Will a CPU convolution of ``x`` run in bfloat16 (autocast, or a bfloat16 input)? In
    float32 the two weight gradients take the same time (12.3 and 12.1 ms at 3x3, 256
    channels), so float32 runs keep torch's."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    return x.dtype == torch.bfloat16
