"""The exports run where descend cannot even be imported: standalone.py (the README's recipe)
decodes image files as the metadata says and predicts what descend predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import descend
from descend.export import export_checkpoint

SCRIPT = Path(__file__).parent / "standalone.py"
# Run the script with `import descend` made to fail, whatever the environment has installed.
NO_DESCEND = ("import runpy, sys; sys.modules['descend'] = None; "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_predicts_without_descend(fmt: str, photo_run: Path, test_images: list[Path],
                                            tmp_path: Path) -> None:
    (tmp_path / "export").mkdir()
    exported = export_checkpoint(photo_run / "best.pt", fmt, tmp_path / "export")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", NO_DESCEND, str(SCRIPT), str(exported.path),
                           *map(str, test_images)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)

    classifier = descend.load(photo_run / "best.pt", device="cpu")
    expected = classifier.logits(torch.stack([classifier.to_pixels(f) for f in test_images]))
    assert out["classes"] == classifier.classes
    assert out["top1"] == [classifier.classes[i] for i in expected.argmax(1).tolist()]
    # Pillow alone decodes the big JPEGs whole, where descend decodes them at a reduced scale:
    # up to 2 grey levels apart (1.8e-3 in the logits when measured), so close, not equal.
    np.testing.assert_allclose(np.array(out["logits"]), expected.numpy(), atol=0.01)


def test_without_descend_means_without_descend(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", NO_DESCEND.replace(
        "runpy.run_path(sys.argv[0], run_name='__main__')", "import descend")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode != 0 and "import of descend halted" in done.stderr
