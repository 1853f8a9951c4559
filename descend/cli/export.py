"""``descend export CKPT --format onnx|torchscript``: a model file that runs without descend."""

from __future__ import annotations

import argparse
import json
from typing import Any

RUN_HINT = {
    "onnx": 'onnxruntime.InferenceSession("{path}").run(None, {{"pixels": uint8_nchw}})[0]',
    "torchscript": 'torch.jit.load("{path}")(torch.from_numpy(uint8_nchw))',
}


# descend.export.FORMATS, named here so that `descend --help` does not import torch.
FORMATS = ["onnx", "torchscript"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript",
                       description="Export a checkpoint as a model that runs without descend "
                       "(onnxruntime or torch.jit). It takes uint8 pixels (N, C, H, W) at the "
                       "model's input size, normalizes them itself and returns logits; class "
                       "names and how to decode an image are in its metadata and in a "
                       "NAME.json file beside it. The export is checked against the checkpoint "
                       "before it is written.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="onnx (default; onnxruntime and most inference runtimes) or "
                   "torchscript (torch.jit.load)")
    p.add_argument("--out", help="the file to write, or a folder (default: model.onnx or "
                   "model.torchscript.pt beside the checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from descend.export import export_checkpoint

    exported = export_checkpoint(args.checkpoint, args.format, args.out, args.overwrite)
    if args.json:
        print(json.dumps(exported.to_dict(), ensure_ascii=False))
        return 0
    d = exported.description
    _, c, h, w = d["input_shape"]
    classes = d["classes"]
    names = ", ".join(classes[:10]) + (f", ... ({len(classes)} in all)" if len(classes) > 10
                                       else "")
    geometry = (f"scaled to a shorter side of {d['resize']}" if d["resize"]
                else f"scaled to cover {w}x{h}") + f" and its centre {w}x{h} cut out"
    print(f"wrote {exported.path} ({args.format}, {exported.size / 1e6:.1f} MB) and "
          f"{exported.sidecar}")
    print(f"checked against the checkpoint on random images: largest logit difference "
          f"{exported.max_difference:.2g}")
    print(f"input  {d['input_name']}: uint8 (N, {c}, {h}, {w}) {d['channel_order']}; each image "
          f"{geometry} (\"decode\" in {exported.sidecar.name} says exactly how)")
    print(f"output {d['output_name']}: (N, {len(classes)}) for {names}; softmax gives "
          "probabilities")
    print(f"run it: {RUN_HINT[args.format].format(path=exported.path)}")
    return 0
