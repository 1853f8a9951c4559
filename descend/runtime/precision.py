"""``--amp``: the fast precision for the device, chosen by what the hardware has and measured.

- CUDA: bfloat16 autocast (no loss scaling needed, unlike float16).
- CPU: bfloat16 autocast only where the CPU multiplies bfloat16 natively (the ``amx_bf16`` or
  ``avx512_bf16`` instructions, named in /proc/cpuinfo) *and* a few timed training steps in
  each precision show that it pays; elsewhere bfloat16 is emulated and several times slower
  than float32, so the run stays in float32 and says why.
- anything else (MPS): float32.

Autocast keeps the weights, the optimizer and the loss in float32; only the matrix products and
convolutions run in bfloat16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from descend.cpu import NATIVE_BF16_FLAGS, cpu_flags, native_bf16

# cpu_flags and native_bf16 live in descend.cpu (optim asks too); they are this module's API.
__all__ = ["MIN_SPEEDUP", "NATIVE_BF16_FLAGS", "amp_candidates", "autocast", "choose_amp",
           "cpu_flags", "native_bf16"]

MIN_SPEEDUP = 1.1  # bfloat16 must beat float32 by this much to be worth its rounding


def autocast(device: torch.device, on: bool) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on ``device`` when ``on``; a no-op otherwise."""
    if on and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def amp_candidates(requested: bool, device: torch.device,
                   flags: set[str] | None = None) -> tuple[bool, ...]:
    """The precisions worth timing (False: float32, True: bfloat16 autocast) on ``device``."""
    if not requested or device.type not in ("cuda", "cpu"):
        return (False,)
    if device.type == "cuda":
        return (True,)
    return (False, True) if native_bf16(flags) else (False,)


def choose_amp(requested: bool, device: torch.device, measure: Callable[[bool], float],
               log: Callable[[str], None], flags: set[str] | None = None,
               again: Callable[[bool], float] | None = None) -> bool:
    """Whether to train under bfloat16 autocast; ``measure(amp)`` gives seconds per step.

    On a CPU with native bfloat16, a verdict against it is unexpected (a conv net's step is
    2.5-3x faster there) and costs the whole run that factor, so it gets a second look:
    ``again(amp)`` times both precisions afresh (not from memory), and that timing decides.
    One slow moment of the machine during the bfloat16 probe (582 ms against 211 ms a moment
    later) had sent a 64-256-256 run to float32 for all of its ten epochs."""
    if not requested:
        return False
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    isa = native_bf16(flags)
    if isa is None:
        log("precision float32: this CPU has no native bfloat16 (amx_bf16 or avx512_bf16), "
            "where bfloat16 autocast is emulated and slower")
        return False
    fp32, bf16 = measure(False), measure(True)
    first = ""
    if fp32 / bf16 < MIN_SPEEDUP and again is not None:
        first = (f" (timed twice: {fp32 * 1000:.0f} and {bf16 * 1000:.0f} ms the first time, "
                 "too close to believe on this CPU)")
        fp32, bf16 = again(False), again(True)
    pays = fp32 / bf16 >= MIN_SPEEDUP
    log(f"precision {'bfloat16 autocast' if pays else 'float32'}: this CPU has {isa}; a "
        f"training step took {fp32 * 1000:.0f} ms in float32 and {bf16 * 1000:.0f} ms under "
        f"bfloat16 autocast ({fp32 / bf16:.2f}x)" + ("" if pays else ", too little to pay")
        + first)
    return pays
