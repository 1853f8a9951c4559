"""Our optimizers against torch.optim on a real model and real data: an MLP on MNIST batches.

Each pair starts from the same weights and sees the same 500 batches; the forward and
backward are deterministic on one thread, so any difference comes from the optimizer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from descend.optim.adagrad import AdaGrad
from descend.optim.adam import Adam, AdamW
from descend.optim.momentum import Momentum, Nesterov
from descend.optim.rmsprop import RMSProp
from descend.optim.sgd import SGD

# Pairs computed with exactly torch's tensor operations must agree to the last bit; the other
# two (the EMA as one lerp, Nesterov as two in-place adds) differ from torch's arithmetic by
# rounding, which training then amplifies a little, so they get a relative tolerance.
BITWISE = {"sgd", "momentum (undamped)", "adagrad (eps outside)", "rmsprop (eps outside)",
           "adam", "adamw"}
RTOL = 1e-5
STEPS = 500
BATCH = 64
Make = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
t = torch.optim

# id -> (ours, torch's), in the parametrisation where they are the same algorithm.
PAIRS: dict[str, tuple[Make, Make]] = {
    "sgd": (lambda p: SGD(p, lr=0.05, weight_decay=5e-4),
            lambda p: t.SGD(p, lr=0.05, weight_decay=5e-4)),
    "momentum (EMA form)": (lambda p: Momentum(p, lr=0.05, momentum=0.9),
                            lambda p: t.SGD(p, lr=0.05, momentum=0.9, dampening=0.9)),
    "momentum (undamped)": (lambda p: Momentum(p, lr=0.01, momentum=0.9, dampening=0.0),
                            lambda p: t.SGD(p, lr=0.01, momentum=0.9)),
    "nesterov": (lambda p: Nesterov(p, lr=0.01, momentum=0.9, dampening=0.0, weight_decay=5e-4),
                 lambda p: t.SGD(p, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    "adagrad (eps outside)": (lambda p: AdaGrad(p, lr=0.01, eps=1e-10, eps_inside=False),
                              lambda p: t.Adagrad(p, lr=0.01)),
    "rmsprop (eps outside)": (lambda p: RMSProp(p, lr=1e-3, beta=0.9, eps_inside=False),
                              lambda p: t.RMSprop(p, lr=1e-3, alpha=0.9)),
    "adam": (lambda p: Adam(p, lr=1e-3, weight_decay=1e-4),
             lambda p: t.Adam(p, lr=1e-3, weight_decay=1e-4)),
    "adamw": (lambda p: AdamW(p, lr=1e-3, weight_decay=0.01),
              lambda p: t.AdamW(p, lr=1e-3, weight_decay=0.01)),
}


def read_idx(path: Path, header: int, count: int) -> np.ndarray:
    """The first ``count`` bytes after an IDX header (16 bytes for images, 8 for labels)."""
    with open(path, "rb") as f:
        f.seek(header)
        return np.frombuffer(f.read(count), dtype=np.uint8)


@pytest.fixture(scope="module")
def mnist_batches() -> tuple[torch.Tensor, torch.Tensor]:
    root = os.environ.get("DESCEND_DATA")
    if not root:
        pytest.skip("DESCEND_DATA not set: point it at the datasets folder holding MNIST/raw")
    raw = Path(root) / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"DESCEND_DATA not set to a folder with MNIST/raw: {raw} has no images")
    n = STEPS * BATCH
    images = read_idx(raw / "train-images-idx3-ubyte", 16, n * 784).reshape(n, 784)
    labels = read_idx(raw / "train-labels-idx1-ubyte", 8, n)
    x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.1307) / 0.3081
    return x, torch.from_numpy(labels.astype(np.int64))


def train(make: Make, data: tuple[torch.Tensor, torch.Tensor]
          ) -> tuple[list[float], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    opt = make(list(model.parameters()))
    x, y = data
    losses = []
    for step in range(STEPS):
        xb, yb = x[step * BATCH:(step + 1) * BATCH], y[step * BATCH:(step + 1) * BATCH]
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.slow  # reads the real MNIST files
def test_trajectory_equals_torch_on_mnist(name: str, mnist_batches: tuple) -> None:
    ours, theirs = PAIRS[name]
    our_losses, our_params = train(ours, mnist_batches)
    torch_losses, torch_params = train(theirs, mnist_batches)
    # The run must actually learn, or agreement would prove little.
    assert np.mean(our_losses[-50:]) < 0.5 * np.mean(our_losses[:50]), our_losses[::50]
    if name in BITWISE:
        assert our_losses == torch_losses
        for a, b in zip(our_params, torch_params):
            assert torch.equal(a, b)
    # Relative error of the whole loss curve and of each weight tensor, in norm: element-wise
    # ratios are meaningless for the weights that sit near zero.
    losses, torch_losses_ = np.array(our_losses), np.array(torch_losses)
    assert np.linalg.norm(losses - torch_losses_) <= RTOL * np.linalg.norm(torch_losses_)
    for a, b in zip(our_params, torch_params):
        assert torch.linalg.vector_norm(a - b) <= RTOL * torch.linalg.vector_norm(b)
