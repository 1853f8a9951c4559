"""How images are decoded: one geometry for every split, and for ``descend predict`` and
``serve``, so that the model always sees pictures cut the same way.

Three settings, each a flag of its own (torchvision's ``Resize`` then ``CenterCrop``):
``--image-size S``, the side of the square images the model sees; ``--resize R``, the shorter
side an image is scaled to first; ``--center-crop C``, the centred C x C window then taken.
Decoding is not augmentation: everything after it keeps the size, so training and validation
batches always agree.

descend 0.1 wrote ``resize:R`` and ``center-crop:C`` inside ``--augment``; `split_geometry`
still reads that spelling, where a user types it (`TrainConfig`, ``descend data preview``) and
in the files 0.1 wrote (`descend.runtime.migrate`), and moves the two into their own settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from descend.errors import ConfigError

# The augment names that were decode geometry in descend 0.1, and the settings they are now.
OLD_NAMES = {"resize": "resize", "center-crop": "center_crop"}


@dataclass(frozen=True)
class Geometry:
    """``image_size`` (the final side), ``resize`` (shorter side before the crop) and
    ``center_crop`` (the centred window); None leaves each to the dataset."""

    image_size: int | None = None
    resize: int | None = None
    center_crop: int | None = None

    def merged(self, **old: int) -> Geometry:
        """This geometry with the values of the 0.1 spelling added; `ConfigError` where the
        two spellings disagree."""
        values = {"image_size": self.image_size, "resize": self.resize,
                  "center_crop": self.center_crop}
        for name, value in old.items():
            if values[name] is not None and values[name] != value:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {values[name]} disagrees with "
                                  f"{name.replace('_', '-')}:{value} in --augment; give it once, "
                                  f"as {flag}")
            values[name] = value
        return Geometry(**values)

    def decode_size(self, default: int) -> tuple[int, int | None]:
        """(side images are decoded at, shorter side before the centre crop, or None).

        ``resize`` alone decodes at R. ``center_crop`` decodes the centred C x C window of the
        image resized to R (``resize``), else to the dataset's own size ``default`` (32 for
        CIFAR-10, 64 for an image folder; C if that is smaller): torchvision's ``CenterCrop``.
        An explicit ``image_size`` must agree with the final side.
        """
        side = self.center_crop or self.resize or self.image_size or default
        if self.image_size is not None and self.image_size != side:
            given = "--center-crop" if self.center_crop else "--resize"
            raise ConfigError(f"--image-size {self.image_size} disagrees with {given}, which "
                              f"decodes images at {side}x{side}; drop one of them")
        if self.center_crop is None:
            return side, None
        resize = self.resize or max(default, side)
        if resize < side:
            raise ConfigError(f"--center-crop {side} is larger than --resize {resize}; crop at "
                              "most the resized size")
        return side, resize if resize != side else None

    def decoded(self, default: int) -> tuple[tuple[int, int], int | None]:
        """((h, w) images are decoded at, shorter side before the centre crop or None)."""
        side, resize = self.decode_size(default)
        return (side, side), resize


def split_geometry(augment: str | None) -> tuple[str | None, dict[str, int]]:
    """``--augment`` in the 0.1 spelling: (the spec without ``resize:R`` / ``center-crop:C``,
    their values by setting name). A spec that named nothing else becomes ``none``: in 0.1 an
    explicit ``--augment`` replaced the default augmentation."""
    if augment is None:
        return None, {}
    kept, old = [], {}
    for item in augment.split(","):
        name, _, value = item.strip().partition(":")
        if name not in OLD_NAMES:
            kept.append(item)
            continue
        try:
            old[OLD_NAMES[name]] = int(value)
        except ValueError:
            raise ConfigError(f"--augment {augment!r}: {name} needs a whole number of pixels, "
                              f"e.g. {name}:224 (better: --{name} 224)") from None
        if old[OLD_NAMES[name]] < 1:
            raise ConfigError(f"--augment {augment!r}: {name} needs a size of at least 1")
    if not old:
        return augment, {}
    return ",".join(kept) or "none", old
