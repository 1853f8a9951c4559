"""Models by name: ``mlp`` (the seed's MyNet), ``cnn``, ``fastres`` (the default), ``tv:NAME``.

Each model file registers itself and its recipe (`registry.register`); a new model is one file
and its name in the import line below.
"""

from descend.models import (  # noqa: F401  (they register)
    cnn,
    efficientnet_lite,
    fastres,
    mlp,
    torchvision_models,
)
from descend.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelSpec,
    Recipe,
    create_model,
    recipe_for,
    with_defaults,
)
from descend.models.torchvision_models import is_torchvision_name

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelSpec", "Recipe", "create_model",
           "is_torchvision_name", "recipe_for", "with_defaults"]
