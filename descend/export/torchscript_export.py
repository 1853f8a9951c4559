"""TorchScript: the wrapper traced with ``torch.jit.trace``, reloaded and checked.

Traced, not scripted: tracing records what the model computes for the one input size it takes,
whatever Python the model is written in (``torch.jit.script`` takes descend's own models but
not a ``tv:`` model in its `InputAdapter`). The batch size stays free, which the check confirms
on batches the trace never saw; torch's own trace check is off because it refuses models that
the check passes (``tv:vit_b_16``). torch 2.14 marks ``torch.jit`` deprecated in favour of
``torch.export``; ONNX is the format to prefer, TorchScript is for torch-only deployments."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import torch
from torch import nn

from descend.export.checks import ExportError, check_agreement, first_line
from descend.export.metadata import EXTRA_FILE


def export_torchscript(wrapper: nn.Module, example: torch.Tensor,
                       description: dict[str, Any]) -> tuple[bytes, float]:
    """The TorchScript file of ``wrapper`` with ``description`` as its extra file
    ``descend.json``, and its largest logit difference from ``wrapper``."""
    with warnings.catch_warnings():
        # torch.jit's deprecation notice, and TracerWarnings on Python conditions on the input's
        # height and width, which are fixed for a model's life.
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
        except Exception as e:
            raise ExportError(f"torch {torch.__version__} cannot trace this model "
                              f"({first_line(e)}); try --format onnx") from None
        buffer = io.BytesIO()
        extra = {EXTRA_FILE: json.dumps(description, ensure_ascii=False)}
        torch.jit.save(traced, buffer, _extra_files=extra)
        data = buffer.getvalue()
        reloaded = torch.jit.load(io.BytesIO(data), map_location="cpu")  # what a user gets

    def run(pixels: torch.Tensor) -> Any:
        with torch.no_grad():
            return reloaded(pixels).numpy()

    return data, check_agreement(wrapper, run, tuple(example.shape[1:]), "TorchScript")
