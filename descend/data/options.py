"""`DataOptions`: how a run asks for its dataset, one typed value from the config to the
dataset factories (`descend.data.datasets`). Light to import: the config builds it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from descend.data.geometry import Geometry


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is to be read, passed whole from the run's config
    (`TrainConfig.data_options`) to the dataset factories.

    ``geometry``: how images are decoded (`descend.data.geometry`).
    ``min_size``: an image file with a side under this many pixels is skipped as
    ``too-small``: at a few pixels a picture holds no evidence of its class (a web tracking
    pixel, a placeholder), and upscaling it would train on a flat colour.
    ``memory_budget``: bytes the decoded images may take (None: a quarter of the available
    memory, or ``$DESCEND_MEMORY_BUDGET``); a bigger image folder is listed for streaming
    instead of decoded.
    """

    geometry: Geometry = Geometry()
    val_fraction: float | None = None
    seed: int = 0
    download: bool = True
    strict: bool = False
    progress: bool = True
    min_size: int = 8
    memory_budget: int | None = None

    def changed(self, **changes: Any) -> DataOptions:
        """These options with some changed; ``image_size``, ``resize`` and ``center_crop``
        change the geometry. An unknown name is a `TypeError`, as for any call."""
        geometry = {k: changes.pop(k) for k in ("image_size", "resize", "center_crop")
                    if k in changes}
        if geometry:
            changes["geometry"] = replace(changes.get("geometry", self.geometry), **geometry)
        return replace(self, **changes)
