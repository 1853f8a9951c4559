"""The proof an export is asked for: the exported file gives the checkpoint's logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from descend.errors import DescendError

# Two runtimes' float32 kernels differ by about 1e-6 of the logits' scale (1.3e-6 for a
# random-weight convnext_tiny, 0 to 4e-8 for descend's mlp and cnn): 1e-4 leaves a hundredfold
# margin, and a wrong graph (normalization lost, an op mistranslated) is off by far more.
RELATIVE_TOLERANCE = 1e-4
# Batch sizes run through the exported file: 1, and one the export never saw (it traced 2), so a
# batch size baked into the graph is caught here rather than by a user.
CHECK_BATCHES = (1, 5)
EXAMPLE_BATCH = 2  # torch.export treats a dimension of 0 or 1 as a constant: trace with 2
SEED = 0


class ExportError(DescendError):
    """A model that could not be exported, or whose export does not agree with it."""


def random_pixels(shape: tuple[int, ...], batch: int, seed: int = SEED) -> torch.Tensor:
    """Uniform uint8 pixels (batch, *shape): every value the input can take, seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g)


def check_agreement(wrapper: nn.Module, run: Callable[[torch.Tensor], np.ndarray],
                    shape: tuple[int, ...], what: str) -> float:
    """The largest |difference| between ``run(pixels)`` (the exported file) and ``wrapper``
    (the checkpoint's model) on random batches of `CHECK_BATCHES` images; an `ExportError`
    when it exceeds `RELATIVE_TOLERANCE` of the logits' scale (at least 1) or a shape differs.
    """
    worst = 0.0
    for i, batch in enumerate(CHECK_BATCHES):
        pixels = random_pixels(shape, batch, SEED + 1 + i)
        with torch.no_grad():
            expected = wrapper(pixels).float().numpy()
        got = np.asarray(run(pixels))
        if got.shape != expected.shape:
            raise ExportError(f"the {what} model gives logits of shape {list(got.shape)} for a "
                              f"batch of {batch}, the checkpoint {list(expected.shape)}: the "
                              "export is wrong; try the other --format and report this")
        difference = float(np.abs(got - expected).max())
        limit = RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
        if not difference <= limit:  # also refuses NaN
            raise ExportError(f"the {what} model disagrees with the checkpoint (largest logit "
                              f"difference {difference:.3g}, allowed {limit:.3g}): the export "
                              "is wrong; try the other --format and report this")
        worst = max(worst, difference)
    return worst


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__
