"""What a result was measured on: versions, CPU model, threads, GPU."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "amx_int8", "amx_bf16", "f16c")


def cpu_flags() -> list[str]:
    """The CPU feature flags that decide which int8/fp16 kernels are fast (x86 Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in INTERESTING_FLAGS if f in have]
    except OSError:
        pass
    return []


def memory_bytes() -> int:
    """Physical memory of this machine (a very large number where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 50


def environment() -> dict[str, Any]:
    """Versions and hardware, as recorded in results.json."""
    import numpy
    import torch

    from nnopt import __version__

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"nnopt": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort_version, "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu": cpu_model(), "cpu_flags": " ".join(cpu_flags()), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "executable": sys.executable}
