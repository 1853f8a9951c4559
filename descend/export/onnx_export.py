"""ONNX: torch's ``torch.export``-based exporter, checked by onnx's checker and onnxruntime.

The ``torch.export`` exporter (``dynamo=True``) is torch's default since 2.9; the older
TorchScript-based one warns that it is deprecated. With torch 2.14 it exported every model
tried: descend's mlp, cnn and fastres (with and without its mirrored test-time augmentation)
and fifteen torchvision models from alexnet to swin_t and vit_b_16, all agreeing with torch to
4e-6 of the logits' scale or better.
"""

from __future__ import annotations

import inspect
import json
import warnings
from typing import Any

import torch
from torch import nn

from descend.export.checks import ExportError, check_agreement, first_line
from descend.export.metadata import INPUT_NAME, OUTPUT_NAME
from descend.extras import require

# The oldest opset the torch.export exporter writes: the widest choice of runtimes
# (onnxruntime 1.14 and later, and most accelerator runtimes).
OPSET = 18
MAX_BYTES = 2**31 - 1  # protobuf's limit on one message: bigger models need external data files


def export_onnx(wrapper: nn.Module, example: torch.Tensor,
                description: dict[str, Any]) -> tuple[bytes, float]:
    """The ONNX file of ``wrapper`` (a dynamic batch dimension) with ``description`` in its
    ``metadata_props``, and its largest logit difference from ``wrapper``."""
    onnx, ort = _modules()
    try:
        with warnings.catch_warnings():  # the exporter's notes on its own internals
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except Exception as e:  # the exporter fails in many ways; each is "this model, this torch"
        raise ExportError(f"torch {torch.__version__} cannot export this model to ONNX "
                          f"({first_line(e)}); try --format torchscript") from None
    if program is None:  # torch's exporter returns None only when given a file to write
        raise ExportError(f"torch {torch.__version__} exported nothing; try --format torchscript")
    proto = program.model_proto
    proto.doc_string = f"descend classifier; preprocessing: {description['decode']}"
    for key, value in description.items():
        proto.metadata_props.add(key=key, value=json.dumps(value, ensure_ascii=False))
    if proto.ByteSize() > MAX_BYTES:
        raise ExportError("the model is over 2 GB, more than one ONNX file can hold; use "
                          "--format torchscript")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported ONNX model is invalid ({first_line(e)}); try --format "
                          "torchscript and report this") from None
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    run = lambda pixels: session.run(None, {INPUT_NAME: pixels.numpy()})[0]
    return data, check_agreement(wrapper, run, tuple(example.shape[1:]), "ONNX (onnxruntime)")


def _modules() -> tuple[Any, Any]:
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ExportError(f"ONNX export needs torch 2.5 or later (this is {torch.__version__}): "
                          "upgrade torch, or use --format torchscript")
    require("export", "descend export --format onnx")  # onnxscript: the exporter's own
    import onnx
    import onnxruntime

    return onnx, onnxruntime
