"""Size and compute: parameters, non-zeros, file sizes, MACs and peak inference memory."""

from __future__ import annotations

import lzma

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from nnopt.core.environment import native_stderr_silenced
from nnopt.core.registry import METRICS
from nnopt.measure.base import Measurement, is_artifact
from nnopt.measure.quantity import BYTES, COUNT
from nnopt.models.saving import artifact_files, files_size

COMPRESSOR = "xz (lzma preset 9)"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p).item()) for p in model.parameters())


@torch.inference_mode()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example``, from PyTorch's FLOP counter."""
    was = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def peak_forward_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Peak bytes the CPU allocator holds for activations during one forward pass.

    Summed from the profiler's allocation and free events in time order (weights, allocated
    before, are not included).
    """
    model.eval()
    model(example)
    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU],
                                            profile_memory=True) as prof:
        model(example)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


@METRICS.register("params", produces=["params"], quantity=COUNT)
def params(m: Measurement) -> dict[str, float]:
    """Number of parameters (zeros included); for an ONNX artifact, its weight initializers."""
    if hasattr(m.model, "param_count"):
        return {"params": m.model.param_count()}
    return {"params": count_params(m.model)}


@METRICS.register("nonzero_params", produces=["nonzero_params"], quantity=COUNT)
def nonzero_params(m: Measurement) -> dict[str, float]:
    """Number of parameters that are not exactly zero (PyTorch models)."""
    if is_artifact(m.model):
        return {}
    return {"nonzero_params": count_nonzero(m.model)}


@METRICS.register("size", produces=["size_bytes"], quantity=BYTES)
def size(m: Measurement) -> dict[str, float]:
    """Bytes on disk of every file the stage's model ships as: the safetensors weights and the
    spec of a PyTorch model; every file of a deployed artifact (an OpenVINO IR's model.xml and
    model.bin, an ONNX graph and its external data, an ExecuTorch program, with its spec)."""
    if m.weights_path is None or not m.weights_path.is_file():
        return {}
    return {"size_bytes": files_size(artifact_files(m.weights_path))}


@METRICS.register("compressed_size", produces=["compressed_size_bytes"], quantity=BYTES)
def compressed_size(m: Measurement) -> dict[str, float]:
    """Size in bytes of a real compressed file nnopt decodes back into the model: the Deep
    Compression file (codebooks + Huffman coding) for weight-shared models, else every file the
    stage ships as (see ``size``), each after xz compression (lzma preset 9)."""
    if m.weights_path is None or not m.weights_path.is_file():
        return {}
    encoded = m.weights_path.parent / "model.nnc"
    if encoded.is_file():
        m.details["compressor"] = "Deep Compression codec (k-means codebooks, Huffman coding)"
        return {"compressed_size_bytes": encoded.stat().st_size}
    total = sum(len(lzma.compress(f.read_bytes(), preset=9))
                for f in artifact_files(m.weights_path))
    m.details["compressor"] = COMPRESSOR
    return {"compressed_size_bytes": total}


@METRICS.register("macs", produces=["macs"], quantity=COUNT)
def macs(m: Measurement) -> dict[str, float]:
    """Multiply-accumulates for one input, counted by torch.utils.flop_counter (FLOPs / 2)."""
    if is_artifact(m.model):
        return {}
    return {"macs": count_macs(m.model, m.example(1))}


@METRICS.register("peak_memory", produces=["peak_memory_bytes"], quantity=BYTES)
def peak_memory(m: Measurement) -> dict[str, float]:
    """Weights plus peak activation bytes of one forward pass at the first target's batch size."""
    if is_artifact(m.model):
        return {}
    batch = m.targets[0].batch_size if m.targets else 1
    weights = sum(t.numel() * t.element_size() for t in m.model.state_dict().values())
    return {"peak_memory_bytes": weights + peak_forward_bytes(m.model, m.example(batch))}
