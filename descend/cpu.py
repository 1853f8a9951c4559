"""What this CPU can do, read from /proc/cpuinfo rather than assumed: its instruction-set flags
and whether it multiplies bfloat16 natively. A leaf module (torch alone), so that every layer
may ask: `runtime.precision` chooses autocast by it, `optim.muon` its Newton-Schulz precision.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # in the order they pay off


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (empty off Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: set[str] | None = None) -> str | None:
    """The CPU's bfloat16 instruction set (``amx_bf16``/``avx512_bf16``), or None; also None
    where torch was told to stay below AVX-512 (``ATEN_CPU_CAPABILITY=avx2``): its kernels
    then cannot use the instructions the CPU has."""
    if flags is None:
        flags = cpu_flags()
        if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
            return None
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


def multiplies_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: a CUDA device, or a CPU with
    `native_bf16` instructions (read from /proc/cpuinfo once). Elsewhere bfloat16 is emulated."""
    return device.type == "cuda" or (device.type == "cpu" and _this_cpu_has_bf16())


@functools.cache
def _this_cpu_has_bf16() -> bool:
    return native_bf16() is not None
