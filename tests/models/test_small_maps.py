"""SmallMapConv2d: torch's convolution, with the weight gradient computed over the batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from descend.models.small_maps import SMALL_MAP, SmallMapConv2d, batch_as_channels_conv


def pair(ci: int = 6, co: int = 5, k: int = 3, p: int = 1) -> tuple[SmallMapConv2d, nn.Conv2d]:
    ours = SmallMapConv2d(ci, co, k, padding=p)
    theirs = nn.Conv2d(ci, co, k, padding=p, bias=False)
    theirs.weight.data.copy_(ours.weight.data)
    return ours, theirs


def run(conv: nn.Conv2d, x: torch.Tensor, bf16: bool, by_batch: bool = False
        ) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = (batch_as_channels_conv(x, conv.weight, int(conv.padding[0])) if by_batch
             else conv(x))
    (y.float() ** 2).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    return y, x.grad, conv.weight.grad


def backward_of(y: torch.Tensor) -> str:
    return type(y.grad_fn).__name__


@pytest.mark.parametrize("side", [1, 2, 3, SMALL_MAP])
@pytest.mark.parametrize("k,p", [(3, 1), (3, 0), (1, 0), (5, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_gradients_equal_torch(side: int, k: int, p: int, channels_last: bool) -> None:
    if side + 2 * p < k:
        pytest.skip("the kernel is larger than the padded map")
    torch.manual_seed(side)
    ours, theirs = pair(k=k, p=p)
    x = torch.randn(7, 6, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got, want = run(ours, x, bf16=False, by_batch=True), run(theirs, x, bf16=False)
    assert "BatchAsChannels" in backward_of(got[0])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_matches_torch_dtypes_and_values() -> None:
    torch.manual_seed(0)
    ours, theirs = pair(ci=32, co=16)
    x = torch.randn(64, 32, 3, 3).contiguous(memory_format=torch.channels_last)
    got, want = run(ours, x, bf16=True), run(theirs, x, bf16=True)
    assert "BatchAsChannels" in backward_of(got[0])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype  # bf16 output, float32 gradients of float32 leaves
        # both are bf16 convolutions accumulated in float32: a few bf16 roundings apart
        assert (g.float() - w.float()).abs().max() <= 2e-2 * w.float().abs().max()


def test_a_bfloat16_model_gets_bfloat16_gradients() -> None:
    torch.manual_seed(0)
    ours, theirs = (conv.to(torch.bfloat16) for conv in pair())
    x = torch.randn(4, 6, 3, 3, dtype=torch.bfloat16)
    got, want = run(ours, x, bf16=False), run(theirs, x, bf16=False)
    assert "BatchAsChannels" in backward_of(got[0])
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == torch.bfloat16
        assert (g.float() - w.float()).abs().max() <= 2e-2 * w.float().abs().max()


def test_float32_larger_maps_evaluation_and_no_grad_take_torchs_own_path() -> None:
    conv = SmallMapConv2d(3, 4)
    small = torch.randn(2, 3, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "BatchAsChannels" in backward_of(conv(small))
        big = torch.randn(2, 3, SMALL_MAP + 1, SMALL_MAP + 1)
        assert backward_of(conv(big)) == "ConvolutionBackward0"
        conv.eval()
        assert backward_of(conv(small)) == "ConvolutionBackward0"
        conv.train()
        with torch.no_grad():
            assert conv(small).grad_fn is None
    # float32: both weight gradients take the same time, so torch's is kept (same bits)
    assert backward_of(conv(small)) == "ConvolutionBackward0"


def test_state_dict_is_an_nn_conv2ds() -> None:
    ours, theirs = pair()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Conv2d)
