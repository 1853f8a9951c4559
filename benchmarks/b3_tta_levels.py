"""B3's TTA check: the test accuracy of fastres checkpoints at each test-time augmentation level.

    python benchmarks/b3_tta_levels.py RUN/best.pt [RUN2/best.pt ...]

Level 0 is the model alone, 1 adds the mirror image, 2 also the mirrored pairs shifted one pixel
up-left and down-right (`descend.models.fastres.FastRes.forward`). The same weights at each
level, on the run's own test split (bfloat16 autocast where the CPU has it natively).
"""

from __future__ import annotations

import sys

import torch

from descend.data.batching import LoaderOptions
from descend.data.loader import make_loader
from descend.evaluation.evaluate import _load_run_data, run_data_name
from descend.runtime.checkpoint import load_model
from descend.runtime.precision import autocast, native_bf16


def main(checkpoints: list[str]) -> None:
    cpu = torch.device("cpu")
    for path in checkpoints:
        loaded = load_model(path, cpu)
        model = loaded.model.eval()
        splits = _load_run_data(loaded, run_data_name(loaded.checkpoint), None, None, False)
        test = splits.test if splits.test is not None else splits.val
        accuracies = []
        for level in (0, 1, 2):
            model.tta = level
            correct = 0
            with torch.no_grad(), autocast(cpu, native_bf16() is not None):
                for x, y in make_loader(test, LoaderOptions(500, loaded.mean, loaded.std,
                                                            device=cpu)):
                    correct += int((model(x).argmax(1) == y).sum())
            accuracies.append(correct / len(test))
        print(path, " ".join(f"tta{level} {a:.4f}" for level, a in enumerate(accuracies)))


if __name__ == "__main__":
    main(sys.argv[1:])
