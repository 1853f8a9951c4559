"""``descend export CKPT --format onnx|torchscript``: a model file that runs without descend."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from descend.cli import common

RUN_HINT = {
    "onnx": 'onnxruntime.InferenceSession("{path}").run(None, {{"pixels": uint8_nchw}})[0]',
    "torchscript": 'torch.jit.load("{path}")(torch.from_numpy(uint8_nchw))',
}


# descend.export.FORMATS (format -> the file's name), named here so that `descend --help` does
# not import torch.
FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript",
                       description="Export a checkpoint as a model that runs without descend "
                       "(onnxruntime or torch.jit). It takes uint8 pixels (N, C, H, W) at the "
                       "model's input size, normalizes them itself and returns logits; class "
                       "names and how to decode an image are in its metadata and in a "
                       "NAME.json file beside it. The export is checked against the checkpoint "
                       "before it is written.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--format", choices=list(FORMATS), default="onnx",
                   help="onnx: onnxruntime and most inference runtimes; torchscript: "
                   "torch.jit.load (default: onnx)")
    common.add_out(p, "model.onnx or model.torchscript.pt and its NAME.json description",
                   default="the checkpoint's folder")
    common.add_json(p, "what was written and the model's description")


def run(args: argparse.Namespace) -> int:
    from descend.export import export_checkpoint, legacy_file_out

    name = FORMATS[args.format]
    if args.out is not None and legacy_file_out(args.out):
        common.deprecated(f"--out {args.out} (a file)", f"--out {args.out.parent} (the folder; "
                          f"the file is {name})")
        folder, name = args.out.parent, args.out.name
    else:
        checkpoint = Path(args.checkpoint)
        folder = args.out or (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    common.claim_out(folder, [name, name + ".json"], args.overwrite)
    exported = export_checkpoint(args.checkpoint, args.format, args.out, args.overwrite)
    if args.json:
        common.print_json(exported.to_dict())
        common.say_written(folder, [exported.path.name, exported.sidecar.name], json_out=True)
        return 0
    d = exported.description
    _, c, h, w = d["input_shape"]
    classes = d["classes"]
    names = ", ".join(classes[:10]) + (f", ... ({len(classes)} in all)" if len(classes) > 10
                                       else "")
    geometry = (f"scaled to a shorter side of {d['resize']}" if d["resize"]
                else f"scaled to cover {w}x{h}") + f" and its centre {w}x{h} cut out"
    print(f"{exported.path.name}: {args.format}, {exported.size / 1e6:.1f} MB; checked against "
          f"the checkpoint on random images: largest logit difference "
          f"{exported.max_difference:.2g}")
    print(f"input  {d['input_name']}: uint8 (N, {c}, {h}, {w}) {d['channel_order']}; each image "
          f"{geometry} (\"decode\" in {exported.sidecar.name} says exactly how)")
    print(f"output {d['output_name']}: (N, {len(classes)}) for {names}; softmax gives "
          "probabilities")
    print(f"run it: {RUN_HINT[args.format].format(path=exported.path)}")
    common.say_written(folder, [exported.path.name, exported.sidecar.name])
    return 0
