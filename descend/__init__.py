"""descend: train, evaluate, save and serve image classifiers with PyTorch.

The Python API mirrors the command line::

    import descend
    result = descend.train(data="mnist", model="cnn", epochs=3)
    clf = descend.load(result.run_dir / "best.pt")
    clf.predict(["digit.png"], top_k=3)
    descend.evaluate(result.run_dir / "best.pt")["accuracy"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from descend.version import __version__

if TYPE_CHECKING:
    from descend.evaluation.predict import Classifier
    from descend.training.trainer import TrainResult


def train(config: Any = None, resume: Any = None, **settings: Any) -> TrainResult:
    """`descend train`: a `TrainConfig` and/or its settings as keywords."""
    from descend.audit.decisions import training_notice
    from descend.training.trainer import train as _train

    return _train(config, resume, folder_notice=training_notice, **settings)


def load(checkpoint: Any, device: str = "auto") -> Classifier:
    """A checkpoint, ready to ``predict`` on PIL images, paths, bytes or tensors."""
    from descend.evaluation.predict import Classifier

    return Classifier.load(checkpoint, device)


def evaluate(checkpoint: Any, **options: Any) -> dict[str, Any]:
    """`descend eval`: the same report as ``descend eval --json``."""
    from descend.evaluation.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(checkpoint, **options)


__all__ = ["__version__", "evaluate", "load", "train"]
