""""Will it be faster here?": time the model's layers dense and sparse on each target first.

For a PyTorch CPU target, every Linear layer is timed as a dense ``F.linear`` and as the CSR path
at the pruned weights' real sparsity, at the target's batch size and threads (convolutions have
no CPU sparse kernel: timed dense on both sides). On a PyTorch cuda target, every Linear layer
whose weight is 2:4 sparse is timed in fp16 dense against the semi-structured sparse kernel
(``to_sparse_semi_structured``); other layers count dense on both sides. ONNX Runtime, OpenVINO
and ExecuTorch are timed as whole models on their own runtime: the pruned model (zeros in dense
tensors) against the dense one. Sparsity "pays off" only when the sparse side is at least
``MARGIN`` faster (smaller differences are within the noise of this kind of timing); a warning
is raised exactly where it does not. A target that cannot run here (no GPU, a missing extra)
gets a row saying why, and no figure.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnopt.measure.latency import skip_reason, target_runner, time_calls
from nnopt.measure.runtimes import torch_threads
from nnopt.measure.sparse_exec import SparseLinear
from nnopt.measure.target import Target

FAST = {"warmup": 5, "repeats": 30, "min_seconds": 0.2}
MARGIN = 1.05  # sparse must be >= 5% faster to count as paying off


def _layer_inputs(model: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str):  # noqa: ANN202  (a hook returning None leaves the output alone)
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            inputs.setdefault(name, args[0])
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    with torch.inference_mode():
        model.eval()(example)
    for h in hooks:
        h.remove()
    return inputs


def torch_layers(model: nn.Module, example: torch.Tensor, threads: int) -> list[dict[str, Any]]:
    """Per-layer dense and sparse times (ms) on PyTorch at this batch and thread count."""
    rows = []
    modules = dict(model.named_modules())
    with torch_threads(threads), torch.inference_mode():
        for name, x in _layer_inputs(model, example).items():
            layer = modules[name]
            zeros = 1.0 - layer.weight.count_nonzero().item() / layer.weight.numel()
            dense = time_calls(lambda: layer(x), **FAST)["median_ms"]
            if isinstance(layer, nn.Linear):
                sparse_layer = SparseLinear(layer)
                sparse = time_calls(lambda: sparse_layer(x), **FAST)["median_ms"]
                kernel = "csr"
            else:
                sparse, kernel = dense, "dense (no CPU sparse conv kernel)"
            rows.append({"layer": name, "sparsity": zeros, "dense_ms": dense, "sparse_ms": sparse,
                         "kernel": kernel})
    return rows


def cuda_layers(model: nn.Module, example: torch.Tensor) -> list[dict[str, Any]]:
    """Per-layer fp16 times (ms, CUDA events) of every Linear layer on the GPU: dense
    ``F.linear`` against the 2:4 semi-structured kernel where the weight is 2:4 sparse."""
    import torch.nn.functional as F
    from torch.sparse import to_sparse_semi_structured

    rows = []
    modules = dict(model.named_modules())
    with torch.inference_mode():
        for name, x in _layer_inputs(model, example).items():
            layer = modules[name]
            if not isinstance(layer, nn.Linear):
                continue
            w = layer.weight.detach().half().cuda()
            xs = x.reshape(-1, layer.in_features).half().cuda()
            dense = time_calls(lambda: (F.linear(xs, w), torch.cuda.synchronize()),
                               **FAST)["median_ms"]
            if is_two_four(layer.weight):
                sw = to_sparse_semi_structured(w)
                sparse = time_calls(lambda: (F.linear(xs, sw), torch.cuda.synchronize()),
                                    **FAST)["median_ms"]
                kernel = "2:4 semi-structured"
            else:
                sparse, kernel = dense, "dense (the weight is not 2:4)"
            zeros = 1.0 - layer.weight.count_nonzero().item() / layer.weight.numel()
            rows.append({"layer": name, "sparsity": zeros, "dense_ms": dense, "sparse_ms": sparse,
                         "kernel": kernel})
    return rows


def is_two_four(weight: torch.Tensor) -> bool:
    """Whether every group of 4 consecutive inputs holds at most 2 non-zeros."""
    if weight.shape[-1] % 4:
        return False
    return bool((weight.reshape(-1, 4) != 0).sum(1).le(2).all())


def model_times(dense: nn.Module, pruned: nn.Module, example: torch.Tensor,
                target: Target) -> tuple[float, float]:
    """Whole-model times of the dense and the pruned (zero-filled) model on the target's own
    runtime (ONNX Runtime, OpenVINO, ExecuTorch)."""
    with tempfile.TemporaryDirectory() as tmp, torch_threads(target.threads), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = []
        for tag, model in (("dense", dense), ("pruned", pruned)):
            work = Path(tmp) / tag
            work.mkdir()
            fn = target_runner(copy.deepcopy(model), target, example, work)[0]
            out.append(time_calls(fn, **FAST)["median_ms"])
    return out[0], out[1]


def preflight(dense: nn.Module, pruned: nn.Module, example_for: Any,
              targets: list[Target]) -> tuple[list[dict[str, Any]], list[str]]:
    """Dense vs sparse time per target (and per layer on PyTorch), and the warnings it implies."""
    results, warns = [], []
    for t in targets:
        example = example_for(t.batch_size)
        why = skip_reason(pruned, t)
        if why:
            results.append({"target": t.name, "runtime": t.runtime, "skipped": why})
            continue
        if t.runtime == "torch" and t.device == "cuda":
            layers = cuda_layers(pruned, example)
            dense_ms = sum(r["dense_ms"] for r in layers)
            sparse_ms = sum(r["sparse_ms"] for r in layers)
            how = "sum of Linear layer times on the GPU: fp16 dense vs 2:4 semi-structured"
        elif t.runtime == "torch":
            layers = torch_layers(pruned, example, t.threads)
            dense_ms = sum(r["dense_ms"] for r in layers)
            sparse_ms = sum(r["sparse_ms"] for r in layers)
            how = "sum of layer times: dense F.linear/conv vs CSR sparse.mm"
        else:
            layers = []
            dense_ms, sparse_ms = model_times(dense, pruned, example, t)
            how = f"whole model on {t.runtime}: dense vs pruned weights (no sparse kernel used)"
        pays = sparse_ms * MARGIN <= dense_ms
        row = {"target": t.name, "runtime": t.runtime, "batch_size": t.batch_size,
               "threads": t.threads, "dense_ms": dense_ms, "sparse_ms": sparse_ms,
               "speedup": dense_ms / sparse_ms if sparse_ms else None,
               "pays_off": pays, "method": how, "layers": layers}
        if pays and t.runtime == "torch" and t.device == "cpu" and not t.sparse:
            row["note"] = (f"Target '{t.name}' runs dense kernels; set 'sparse: true' on it to "
                           "use the CSR path the pre-flight found faster.")
        results.append(row)
        if not pays:
            warns.append(f"sparsity will not pay off in latency on '{t.name}' ({t.runtime}, "
                         f"batch {t.batch_size}, {t.threads} thread(s)): sparse {sparse_ms:.3f} ms "
                         f"vs dense {dense_ms:.3f} ms (not >= {MARGIN - 1:.0%} faster); it still "
                         "shrinks the compressed file")
    return results, warns
