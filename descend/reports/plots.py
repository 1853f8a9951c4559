"""PNG figures a person would rather look at than read. All writes are atomic.

Built on matplotlib's `Figure` alone, never pyplot: no backend is chosen or switched (a notebook
that imports descend keeps its own), and no figure lingers in pyplot's global list.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from descend.io import atomic_write


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` to ``path`` as a PNG (110 dpi, cropped to its content), atomically."""
    buf = io.BytesIO()
    # PNG needs no backend: savefig renders through a fresh Agg canvas for this one call.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_curves(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label in (("train", "train"), ("val", "validation")):
        done = [r for r in rows if r.get(f"{key}_acc") is not None]  # --val-every skips some
        xs = [r["epoch"] for r in done]
        ax_loss.plot(xs, [r[f"{key}_loss"] for r in done], marker="o", label=label)
        ax_acc.plot(xs, [100 * r[f"{key}_acc"] for r in done], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_confusion(matrix: torch.Tensor, classes: Sequence[str], path: str | Path) -> None:
    """Rows are true classes, columns predictions; cells show counts, colour the row share."""
    m = matrix.numpy()
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = Figure(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    save_figure(fig, path)


def plot_image_grid(
    images: torch.Tensor, titles: Sequence[str], path: str | Path, columns: int = 8
) -> None:
    """uint8 images (N, C, H, W) in a grid, each with a title line."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(columns * 1.5, rows * 1.7))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        arr = img.permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1
                  else None, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    save_figure(fig, path)


# Heat maps: jet, the colours readers of Grad-CAM figures know; drawn with an opacity that grows
# with the evidence (up to HEAT_ALPHA), so where there is none the picture shows unchanged.
HEAT_CMAP = "jet"
HEAT_ALPHA = 0.6
# An explanation PNG is at least this tall: a 32 x 32 picture is scaled up (by whole pixels, no
# smoothing, so what is shown is what the model saw) until a person can see it.
EXPLANATION_HEIGHT = 192


def heat_overlay(pixels: torch.Tensor, heat: torch.Tensor) -> np.ndarray:
    """uint8 (H, W, 3): the picture ``pixels`` (uint8 C, H, W) under a heat map ``heat`` (H, W,
    values in [0, 1])."""
    from matplotlib import colormaps

    img = pixels.permute(1, 2, 0).numpy().astype(np.float32)
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    h = heat.numpy().clip(0, 1)[..., None]
    colour = colormaps[HEAT_CMAP](h[..., 0])[..., :3] * 255.0
    alpha = HEAT_ALPHA * h
    return np.round(img * (1 - alpha) + colour * alpha).astype(np.uint8)


def save_explanation(pixels: torch.Tensor, heat: torch.Tensor, path: str | Path) -> None:
    """A PNG of the picture (uint8 C, H, W) and, beside it, the picture under its heat map."""
    from PIL import Image

    img = pixels.permute(1, 2, 0).numpy()
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    gap = np.full((img.shape[0], 1, 3), 255, dtype=np.uint8)
    side = np.concatenate([img, gap, heat_overlay(pixels, heat)], axis=1)
    scale = max(1, -(-EXPLANATION_HEIGHT // img.shape[0]))
    side = side.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(side).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_explanation_grid(
    images: torch.Tensor, heats: torch.Tensor, titles: Sequence[str], path: str | Path,
    columns: int = 8, caption: str | None = None,
) -> None:
    """uint8 images (N, C, H, W) in a grid, each with its title, and under each row the same
    pictures under their heat maps (N, H, W)."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(columns * 1.5, rows * 3.2))
    axes = fig.subplots(2 * rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, heat, title) in enumerate(zip(images, heats, titles)):
        top, bottom = axes[2 * (k // columns), k % columns], axes[2 * (k // columns) + 1,
                                                                  k % columns]
        arr = img.permute(1, 2, 0).numpy()
        top.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1
                   else None, interpolation="nearest")
        top.set_title(title, fontsize=7)
        bottom.imshow(heat_overlay(img, heat), interpolation="nearest")
    if caption:
        fig.suptitle(caption, fontsize=9, y=1.0, va="bottom")  # above the titles, not on them
    save_figure(fig, path)
