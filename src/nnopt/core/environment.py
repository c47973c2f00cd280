"""What a result was measured on: versions, CPU model, threads, GPU."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import platform
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import torch

from nnopt.core.version import __version__


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


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Run a library call that sets environment variables for itself (torch's FX quantization
    sets TORCHINDUCTOR_CACHE_DIR) and give the process back the environment it had."""
    before = dict(os.environ)
    try:
        yield
    finally:
        if dict(os.environ) != before:
            os.environ.clear()
            os.environ.update(before)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 for a block: native libraries that log on it (the profiler's
    start/stop lines, ExecuTorch's cpuinfo and thread-pool lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def onnxruntime() -> ModuleType:
    """ONNX Runtime, imported the way nnopt needs it: ONNX Runtime (1.32 on Linux) writes a
    telemetry database under ~/.cache at import unless ORT_DISABLE_TELEMETRY is set first, and
    nnopt writes nothing outside the folders it is given. A user who set the variable keeps
    their value; nothing is set unless nnopt is about to use ONNX Runtime."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return importlib.import_module("onnxruntime")


def environment() -> dict[str, Any]:
    """Versions and hardware, as recorded in results.json."""
    try:
        ort_version = onnxruntime().__version__
    except ImportError:
        ort_version = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    runtimes = {}
    for dist in ("openvino", "nncf", "executorch"):  # read from metadata: nothing is imported
        try:
            runtimes[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            runtimes[dist] = None
    group = torch.distributed.is_available() and torch.distributed.is_initialized()
    return {"nnopt": __version__, "host": socket.gethostname(), "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": ort_version, **runtimes, "numpy": numpy.__version__, "platform": platform.platform(),
            "cpu": cpu_model(), "cpu_flags": " ".join(cpu_flags()), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": gpu,
            "world_size": torch.distributed.get_world_size() if group else 1,
            "backend": torch.distributed.get_backend() if group else None,
            "executable": sys.executable}
