"""Every model descend can build exports: each registered model, and a torchvision one (grey
images, which it repeats to RGB). Nothing in the export knows one model from another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from descend.export import export_checkpoint
from descend.models import ModelSpec
from descend.models.registry import model_names
from descend.runtime.checkpoint import load_model

# torch 2.14 marks torch.jit deprecated; loading a TorchScript file is what these tests are for.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def _specs() -> list[ModelSpec]:
    # efficientnet_lite1 and 2 are lite0's network, wider and deeper: lite0 stands for them.
    registered = [name for name in model_names() if not name.startswith("tv:")
                  and name not in ("efficientnet_lite1", "efficientnet_lite2")]
    return ([ModelSpec(name, 4, 3, (16, 16)) for name in registered]
            + [ModelSpec("cnn", 4, 1, (20, 12)), ModelSpec("tv:resnet18", 4, 1, (16, 16))])


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: f"{s.name}-{s.in_channels}ch")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_model_exports(spec: ModelSpec, fmt: str, tmp_path: Path,
                             random_checkpoint) -> None:  # noqa: ANN001
    ckpt = random_checkpoint(tmp_path / "best.pt", spec)
    exported = export_checkpoint(ckpt, fmt)
    c, (h, w) = spec.in_channels, spec.image_size
    pixels = np.random.default_rng(1).integers(0, 256, (7, c, h, w), dtype=np.uint8)
    loaded = load_model(ckpt)
    with torch.no_grad():
        x = torch.from_numpy(pixels).float() / 255
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (loaded.mean, loaded.std))
        expected = loaded.model((x - mean) / std).numpy()
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(exported.path),
                                               providers=["CPUExecutionProvider"])
        got = session.run(None, {"pixels": pixels})[0]
    else:
        with torch.no_grad():
            got = torch.jit.load(str(exported.path))(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()
