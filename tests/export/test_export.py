"""ONNX and TorchScript exports give the checkpoint's logits, carry their metadata, and run with
onnxruntime and torch.jit alone (`run_onnx` and `run_torchscript` use nothing of descend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import descend
from descend.export import Exported, export_checkpoint
from descend.export.checks import ExportError, check_agreement

# torch 2.14 marks torch.jit deprecated; loading a TorchScript file is what these tests are for.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

FORMATS = ["onnx", "torchscript"]


def run_onnx(path: Path, pixels: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def run_torchscript(path: Path, pixels: np.ndarray) -> np.ndarray:
    model = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return model(torch.from_numpy(pixels)).numpy()


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}


@pytest.fixture(scope="module")
def exports(photo_run: Path) -> dict[str, Exported]:
    return {f: export_checkpoint(photo_run / "best.pt", f) for f in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_agrees_with_the_checkpoint_on_100_images(
        fmt: str, exports: dict[str, Exported], photo_run: Path, test_images: list[Path]) -> None:
    classifier = descend.load(photo_run / "best.pt", device="cpu")
    pixels = torch.stack([classifier.to_pixels(f) for f in test_images])  # descend's decoding
    expected = classifier.logits(pixels).numpy()
    got = RUNNERS[fmt](exports[fmt].path, pixels.numpy())
    assert got.shape == (100, 3)
    assert (got.argmax(1) == expected.argmax(1)).all()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # and the model is not trivial: the test images do not all fall in one class
    assert len(set(expected.argmax(1).tolist())) == 3


def test_the_exports_are_written_beside_the_checkpoint(exports: dict[str, Exported],
                                                        photo_run: Path) -> None:
    assert exports["onnx"].path == photo_run / "model.onnx"
    assert exports["torchscript"].path == photo_run / "model.torchscript.pt"
    for exported in exports.values():
        assert exported.sidecar == exported.path.with_name(exported.path.name + ".json")
        assert exported.max_difference < 1e-4
        assert not list(photo_run.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_the_metadata_describes_the_run(exports: dict[str, Exported], photo_run: Path) -> None:
    ckpt = torch.load(photo_run / "best.pt", weights_only=True)
    described = exports["onnx"].description
    assert described["classes"] == ckpt["classes"] == ["blue", "green", "red"]
    assert described["mean"] == ckpt["normalization"]["mean"]
    assert described["std"] == ckpt["normalization"]["std"]
    assert described["input_shape"] == [None, 3, 16, 16]
    assert described["input_dtype"] == "uint8" and described["channel_order"] == "RGB"
    assert described["resize"] == 24 and described["crop"] == [16, 16]  # resize:24,center-crop:16
    assert "shorter side is 24 pixels" in described["decode"]
    assert described["source"]["checkpoint"] == "run/best.pt"


def test_onnx_metadata_props_and_sidecar_are_readable(exports: dict[str, Exported]) -> None:
    exported = exports["onnx"]
    model = onnx.load(str(exported.path))
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert props == json.loads(exported.sidecar.read_text(encoding="utf-8"))
    assert props == exported.description
    session = onnxruntime.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ["blue", "green", "red"]
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("pixels", "tensor(uint8)", [3, 16, 16])
    assert isinstance(inp.shape[0], str)  # a named, dynamic batch dimension
    assert (out.name, out.shape[1]) == ("logits", 3)
    assert model.opset_import[0].version == 18
    onnx.checker.check_model(model, full_check=True)


def test_torchscript_extra_file_and_sidecar_are_readable(exports: dict[str, Exported]) -> None:
    exported = exports["torchscript"]
    extra = {"descend.json": ""}
    torch.jit.load(str(exported.path), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["descend.json"]) == exported.description
    assert json.loads(exported.sidecar.read_text(encoding="utf-8")) == exported.description


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_batch_size_runs(fmt: str, exports: dict[str, Exported]) -> None:
    for n in (1, 3, 64):
        pixels = np.random.default_rng(n).integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
        assert RUNNERS[fmt](exports[fmt].path, pixels).shape == (n, 3)


def test_a_disagreeing_export_is_refused_with_a_message() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 4, 4))
    wrong = lambda pixels: model(pixels.float()).detach().numpy() + 0.5
    with pytest.raises(ExportError, match="disagrees with the checkpoint.*--format"):
        check_agreement(lambda p: model(p.float()), wrong, (3, 4, 4), "ONNX")
    nan = lambda pixels: np.full((len(pixels), 2), np.nan, dtype=np.float32)
    with pytest.raises(ExportError, match="disagrees"):
        check_agreement(lambda p: model(p.float()), nan, (3, 4, 4), "ONNX")
