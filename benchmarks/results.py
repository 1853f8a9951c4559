"""What the benchmarks read from a `descend train --json` result."""

from __future__ import annotations


def final_test_acc(result: dict) -> float:  # type: ignore[type-arg]
    """Test accuracy of the final weights. CIFAR-10 and MNIST validate on their test split
    (no separate test pass then), so it is the last epoch's validation accuracy, not the best
    epoch's: picking the best epoch by test accuracy would flatter the figure."""
    if result.get("test_accuracy") is not None:
        return float(result["test_accuracy"])
    return float(result["history"][-1]["val_acc"])
