"""The plots leave matplotlib as they found it, and save_figure writes one clean PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from descend.reports.plots import save_figure

# Run in a fresh interpreter: the backend is process-wide, and this one's is already chosen.
CHILD = """
import sys
import matplotlib
before = matplotlib.get_backend()
from descend.reports import plots
plots.plot_curves([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "train_acc": 0.5,
                    "val_acc": 0.4}], sys.argv[1])
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_and_plotting_keep_the_users_backend(tmp_path: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "svg"}  # a notebook's choice, say; anything but Agg
    out = tmp_path / "curves.png"
    done = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "svg", "False"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_figure_writes_a_png_at_110_dpi_and_nothing_else(tmp_path: Path) -> None:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    path = tmp_path / "sub" / "line.png"
    save_figure(fig, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert [round(d) for d in image.info["dpi"]] == [110, 110]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it
