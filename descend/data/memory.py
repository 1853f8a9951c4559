"""How much memory decoded images may take before the streaming path is used instead.

The default budget is a quarter of the memory available now: the decoded uint8 images, the
model, its activations and the optimizer state must all fit, with room for the page cache.
``$DESCEND_MEMORY_BUDGET`` (bytes, or with a K, M, G suffix; ``0`` always streams) overrides it.
"""

from __future__ import annotations

import os

from descend.errors import ConfigError

BUDGET_SHARE = 0.25
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``), else total RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # no way to ask (Windows): assume a small laptop


def parse_bytes(text: str) -> int:
    """``"2G"`` -> 2147483648; ``"500M"``, ``"123"``, ``"1.5G"`` likewise."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a size in bytes; use e.g. 500M or 2G") from None
    if value < 0:
        raise ConfigError(f"a memory budget cannot be negative, got {text!r}")
    return int(value * _UNITS[unit])


def memory_budget(explicit: int | None = None) -> int:
    """Bytes the decoded images of a dataset may take in memory."""
    if explicit is not None:
        return explicit
    env = os.environ.get("DESCEND_MEMORY_BUDGET")
    if env:
        return parse_bytes(env)
    return int(available_memory() * BUDGET_SHARE)
