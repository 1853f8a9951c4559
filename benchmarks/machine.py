"""The machine a benchmark ran on, printed at the top of every benchmark's output."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from descend.runtime.precision import native_bf16

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    bf16 = native_bf16() or "none (no amx_bf16/avx512_bf16)"
    return (f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), python {platform.python_version()}, GPU {gpu}, "
            f"native CPU bfloat16: {bf16}")
