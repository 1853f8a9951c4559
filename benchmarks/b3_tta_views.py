"""B3's test-time augmentation, view by view: which shifted and mirrored views to average.

    python benchmarks/b3_tta_views.py RUN/last.pt [RUN2/last.pt ...]

fastres's level 2 (airbench's) averages the logits of the image and its mirror at weight 1/2
and of the mirrored pairs shifted one pixel up-left and down-right (reflect padding) at 1/4
each. This computes each view's logits once per checkpoint (the model alone, on the run's own
test split, bfloat16 autocast where the CPU has it natively) and scores weighted averages of
them: more shifts, shifts of two pixels, and zero padding (what ``crop:P`` trains on) against
reflect padding. Pick on some checkpoints and confirm on others: these are test-split scores.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from descend.data.batching import LoaderOptions
from descend.data.loader import make_loader
from descend.evaluation.evaluate import _load_run_data, run_data_name
from descend.runtime.checkpoint import load_model
from descend.runtime.precision import autocast, native_bf16

Shift = tuple[int, int, str]  # rows, columns (the view's content moves by minus these), padding
DIAGONAL: list[Shift] = [(-1, -1, "reflect"), (1, 1, "reflect")]  # level 2's
ANTI: list[Shift] = [(-1, 1, "reflect"), (1, -1, "reflect")]
EDGES: list[Shift] = [(0, 1, "reflect"), (0, -1, "reflect"), (1, 0, "reflect"), (-1, 0, "reflect")]
FAR: list[Shift] = [(-2, -2, "reflect"), (2, 2, "reflect"), (-2, 2, "reflect"), (2, -2, "reflect")]
ZEROS: list[Shift] = [(-1, -1, "constant"), (1, 1, "constant")]
# name: the shifted views averaged, their mirrored pairs sharing half the weight equally; the
# image and its mirror always take the other half
COMBOS: dict[str, list[Shift]] = {
    "level 1 (mirror)": [],
    "level 2 (airbench: 2 diagonal shifts)": DIAGONAL,
    "level 2, zero padding": ZEROS,
    "4 diagonal shifts": DIAGONAL + ANTI,
    "8 neighbours": DIAGONAL + ANTI + EDGES,
    "4 diagonals + 4 at 2 pixels": DIAGONAL + ANTI + FAR,
}


def view(x: torch.Tensor, shift: Shift) -> torch.Tensor:
    """``x`` read at (i + dy, j + dx) from the image padded by 2 (reflected or zeros)."""
    dy, dx, mode = shift
    h, w = x.shape[-2:]
    padded = F.pad(x, (2, 2, 2, 2), mode=mode)
    return padded[..., 2 + dy:2 + dy + h, 2 + dx:2 + dx + w].contiguous(
        memory_format=torch.channels_last)


def main(checkpoints: list[str]) -> None:
    cpu = torch.device("cpu")
    shifts = sorted({s for combo in COMBOS.values() for s in combo})
    scores: dict[str, list[float]] = {name: [] for name in COMBOS}
    for path in checkpoints:
        loaded = load_model(path, cpu)
        model = loaded.model.eval()
        splits = _load_run_data(loaded, run_data_name(loaded.checkpoint), None, None, False)
        test = splits.test if splits.test is not None else splits.val
        pairs: dict[Shift | None, list[torch.Tensor]] = {s: [] for s in [None, *shifts]}
        labels = []
        with torch.no_grad(), autocast(cpu, native_bf16() is not None):
            for x, y in make_loader(test, LoaderOptions(500, loaded.mean, loaded.std,
                                                        device=cpu)):
                labels.append(y)
                for s in pairs:
                    v = x if s is None else view(x, s)
                    pairs[s].append(model.mirrored(v).float())
        y = torch.cat(labels)
        logits = {s: torch.cat(chunks) for s, chunks in pairs.items()}
        line = []
        for name, combo in COMBOS.items():
            mean = logits[None] / 2
            for s in combo:
                mean = mean + logits[s] / (2 * len(combo))
            scores[name].append(float((mean.argmax(1) == y).float().mean()))
            line.append(f"{100 * scores[name][-1]:.2f}")
        print(path, " ".join(line), flush=True)
    for name, got in scores.items():
        print(f"{name:<40} " + " ".join(f"{100 * a:.2f}" for a in got)
              + f"  mean {100 * sum(got) / len(got):.3f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
