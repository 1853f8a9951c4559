"""Run a descend export on image files without descend: only Pillow, NumPy, and onnxruntime or
torch. The README's recipe; tests/export/test_standalone.py runs it where descend cannot be
imported.

    python standalone.py MODEL.onnx|MODEL.torchscript.pt IMAGE...

Prints one JSON object: {"classes": [...], "logits": [[...], ...], "top1": [...]}.
"""

import json
import sys

import numpy as np
from PIL import Image, ImageOps


def read_metadata(model_path):
    """The export's description, from the model file itself (NAME.json beside it holds the
    same)."""
    if model_path.endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map  # every value is JSON text
        return session, {key: json.loads(value) for key, value in props.items()}
    import torch

    extra = {"descend.json": ""}
    model = torch.jit.load(model_path, map_location="cpu", _extra_files=extra)
    return model, json.loads(extra["descend.json"])


def decode(path, meta):
    """uint8 (C, H, W) pixels as the metadata's "decode" says: upright, transparency on white,
    scaled (shorter side to "resize", or just covering the crop), centre crop."""
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        im = background
    im = im.convert(meta["channel_order"])  # "RGB" or "L"
    h, w = meta["crop"]
    if meta["resize"]:
        scale = meta["resize"] / min(im.size)
    else:
        scale = max(w / im.width, h / im.height)
    # The centred w x h window of the scaled image, in the image's own pixels: one resize.
    crop_w, crop_h = min(w / scale, im.width), min(h / scale, im.height)
    left, top = (im.width - crop_w) / 2, (im.height - crop_h) / 2
    im = im.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(im, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def main(model_path, image_paths):
    model, meta = read_metadata(model_path)
    batch = np.stack([decode(p, meta) for p in image_paths])  # (N, C, H, W) uint8
    if model_path.endswith(".onnx"):
        logits = model.run(None, {meta["input_name"]: batch})[0]
    else:
        import torch

        with torch.no_grad():
            logits = model(torch.from_numpy(batch)).numpy()
    top1 = [meta["classes"][i] for i in logits.argmax(axis=1)]
    print(json.dumps({"classes": meta["classes"], "logits": logits.tolist(), "top1": top1}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
