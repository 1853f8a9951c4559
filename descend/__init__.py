"""descend: train, evaluate, save and serve image classifiers with PyTorch."""

__version__ = "0.1.0"
