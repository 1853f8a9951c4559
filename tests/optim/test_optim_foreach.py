"""The foreach (multi-tensor) path against the per-tensor reference loop, on awkward inputs."""

from __future__ import annotations

import pytest
import torch

SHAPES = [(), (0,), (1,), (7,), (3, 5), (300, 200), (2, 3, 4, 5), (0, 4)]
DTYPES = [torch.float32, torch.float64]


def make_groups(device: str = "cpu") -> list[dict]:
    """Two param groups (different lrs) mixing float32 and float64, every shape, plus one
    parameter that never receives a gradient."""
    gen = torch.Generator().manual_seed(0)
    groups = []
    for g, lr_scale in enumerate((1.0, 0.3)):
        params = []
        for k, shape in enumerate(SHAPES):
            dtype = DTYPES[(k + g) % 2]
            params.append(torch.randn(shape, generator=gen, dtype=dtype).to(device))
        groups.append({"params": params, "lr_scale": lr_scale})
    groups[1]["params"].append(torch.randn(4, 4, generator=gen).to(device))  # never a grad
    return groups


def run(optim_case: tuple, foreach: bool, steps: int = 200, device: str = "cpu"
        ) -> list[torch.Tensor]:
    cls, kwargs = optim_case
    groups = make_groups(device)
    never = groups[1]["params"][-1]
    never_before = never.clone()
    param_groups = [
        {"params": [p.requires_grad_() for p in g["params"]], "lr": kwargs["lr"] * g["lr_scale"]}
        for g in groups
    ]
    opt = cls(param_groups, **kwargs, foreach=foreach)
    params = [p for g in param_groups for p in g["params"]]
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        for k, p in enumerate(params):
            if p is never or (step + k) % 3 == 0 and step > 0:
                p.grad = None  # skipped this step
            else:
                noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(device)
                # Depends on theta, so that any difference between the paths compounds.
                p.grad = 0.5 * p.detach() + noise * (1 + k % 4)
        opt.step()
    assert torch.equal(never, never_before) and never not in opt.state
    return [p.detach().clone() for p in params]


def test_foreach_matches_reference_loop(case: str, optim_case: tuple) -> None:
    fast = run(optim_case, foreach=True)
    slow = run(optim_case, foreach=False)
    moved = False
    for a, b, shape in zip(fast, slow, SHAPES * 2):
        assert a.dtype == b.dtype and a.shape == b.shape
        # Same tensor operations in the same order: on CPU the paths agree to the last bit,
        # which is stronger than the rtol 1e-6 the issue asks for.
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
        assert torch.equal(a, b), f"{case}: {shape} differs in the last bits"
        assert torch.isfinite(a).all()
    start = [p for g in make_groups() for p in g["params"]]
    moved = any(not torch.equal(a, s) for a, s in zip(fast, start) if a.numel())
    assert moved, "the optimizer did not change anything: the comparison would be vacuous"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_foreach_matches_reference_loop_cuda(case: str, optim_case: tuple) -> None:
    fast = run(optim_case, foreach=True, steps=50, device="cuda")
    slow = run(optim_case, foreach=False, steps=50, device="cuda")
    for a, b in zip(fast, slow):
        # CUDA foreach kernels fuse arithmetic differently from the per-tensor kernels.
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
