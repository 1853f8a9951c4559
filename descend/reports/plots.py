"""PNG figures a person would rather look at than read. All writes are atomic."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from descend.io import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_curves(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """Loss and accuracy per epoch, train against validation."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train", "train"), ("val", "validation")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], marker="o", label=label)
        ax_acc.plot(epochs, [100 * r[f"{key}_acc"] for r in rows], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_confusion(matrix: torch.Tensor, classes: Sequence[str], path: str | Path) -> None:
    """Rows are true classes, columns predictions; cells show counts, colour the row share."""
    m = matrix.numpy()
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
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
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        arr = img.permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1
                  else None, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    save_figure(fig, path)
