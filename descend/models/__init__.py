"""Models by name: ``mlp`` (the seed's MyNet), ``cnn``, ``fastres`` (the default), ``tv:NAME``."""

from descend.models.registry import MODELS, ModelSpec, create_model, with_defaults

__all__ = ["MODELS", "ModelSpec", "create_model", "with_defaults"]
