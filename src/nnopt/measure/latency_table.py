"""Latency predicted from a per-operator lookup table (as in ProxylessNAS / FBNet): every leaf
module of a network (convolution, BN, activation, pooling, linear, ...) is timed alone at its
input shape on the target (PyTorch, its batch size and threads), once, and cached on disk for
this machine; a network's predicted latency is the sum over its operators plus a fixed
per-call overhead, measured too. Searches use it to rank architectures without timing each;
the ``nas`` step reports its error against measured latency.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.core.environment import cpu_model
from nnopt.core.errors import NnoptError
from nnopt.core.fileio import atomic_write_json
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement, is_artifact
from nnopt.measure.latency import time_calls
from nnopt.measure.quantity import MS
from nnopt.measure.runtimes import torch_threads
from nnopt.measure.target import Target

_HYPER = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups",
          "in_features", "out_features", "num_features", "output_size", "p", "start_dim")


def cache_dir() -> Path:
    return Path(os.environ.get("NNOPT_CACHE", Path.home() / ".cache" / "nnopt")) / "latency-lut"


def _op_key(module: nn.Module, shape: tuple[int, ...]) -> str:
    hyper = {k: getattr(module, k) for k in _HYPER if hasattr(module, k)}
    if hasattr(module, "bias") and isinstance(module.bias, torch.Tensor):
        hyper["bias"] = True
    return json.dumps([type(module).__name__, hyper, list(shape[1:])], default=str)


def operators(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """(key, module, input shape) of every leaf module a forward pass of ``example`` calls."""
    found: list[tuple[str, nn.Module, tuple]] = []
    hooks = []
    for m in model.modules():
        if next(iter(m.children()), None) is None:
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: found.append((_op_key(mod, tuple(args[0].shape)), mod,
                                                tuple(args[0].shape)))))
    try:
        with torch.inference_mode():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return found


class LatencyTable:
    """Per-operator latencies on one target of this machine, cached in a JSON file."""

    def __init__(self, target: Target, folder: Path | None = None) -> None:
        if target.runtime != "torch" or target.sparse or target.device != "cpu":
            raise NnoptError(f"target '{target.name}': the latency table times PyTorch "
                             "operators on the CPU; other runtimes fuse them, so predict only "
                             "torch CPU targets")
        self.target = target
        ident = json.dumps([cpu_model(), torch.__version__, target.batch_size, target.threads])
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.path = (folder or cache_dir()) / f"torch-{digest}.json"
        self.table: dict[str, float] = self._read()
        self.identity = ident

    def _read(self) -> dict[str, float]:
        """The cached table; a cache that is unreadable or not nnopt's is started afresh."""
        try:
            ops = json.loads(self.path.read_text(encoding="utf-8")).get("ops", {})
        except (OSError, ValueError, AttributeError):
            return {}
        ok = isinstance(ops, dict) and all(
            isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in ops.values())
        return ops if ok else {}

    def _time(self, fn: Any) -> float:
        return time_calls(fn, warmup=5, repeats=30, min_seconds=0.05)["median_ms"]

    def overhead_ms(self) -> float:
        """One call of an empty network (the wrapper's fixed cost)."""
        if "__overhead__" not in self.table:
            empty = nn.Sequential(nn.Identity()).eval()
            x = torch.zeros(self.target.batch_size, 1)
            with torch_threads(self.target.threads), torch.inference_mode():
                self.table["__overhead__"] = self._time(lambda: empty(x))
            self.save()
        return self.table["__overhead__"]

    def predict_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """Sum of the operators' table latencies (timing the missing ones) plus the overhead."""
        example = torch.rand(1, *input_shape)
        ops = operators(model, example)
        missing = [(k, m, s) for k, m, s in ops if k not in self.table]
        with torch_threads(self.target.threads), torch.inference_mode():
            for key, mod, shape in missing:
                if key in self.table:
                    continue
                x = torch.rand(self.target.batch_size, *shape[1:])
                self.table[key] = self._time(lambda mod=mod, x=x: mod(x))
        if missing:
            self.save()
        return self.overhead_ms() + sum(self.table[k] for k, _, _ in ops)

    def save(self) -> None:
        latest = self._read()  # another worker may have added operators meanwhile
        self.table = {**latest, **self.table}
        atomic_write_json(self.path, {"identity": self.identity, "ops": self.table})


@METRICS.register("predicted_latency", produces=["predicted_latency_ms/<target>"],
                  quantity=MS)
def predicted_latency(m: Measurement) -> dict[str, float]:
    """Latency per torch target predicted from the per-operator lookup table (ms)."""
    if is_artifact(m.model):
        return {}
    out = {}
    for target in m.targets:
        if target.runtime == "torch" and not target.sparse and target.device == "cpu":
            table = LatencyTable(target)
            out[f"predicted_latency_ms/{target.name}"] = table.predict_ms(
                m.model, tuple(m.data.input_shape))
    return out
