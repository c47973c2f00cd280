"""The runtime ladder on a CUDA GPU, as nnopt's cuda targets run it: PyTorch fp32 eager ->
fp16 -> bf16 -> torch.compile (fp16) -> ONNX Runtime's CUDA execution provider (fp32) ->
its TensorRT provider (where the build has it), for the quickstart CNN at batch 64 and 1, every
candidate timed side by side in one process (paired rounds, each call synchronised).

Needs a CUDA GPU; without one it prints one line saying so and exits 0 (no figure). A prepared
script of a few minutes for a lent GPU machine:

    python benchmarks/gpu_runtimes.py [--model runs/quickstart/models/train]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from nnopt.compress.quantize.cast import torch_cast
from nnopt.core.environment import onnxruntime
from nnopt.measure.latency import skip_reason, target_runner
from nnopt.measure.paired import time_paired
from nnopt.measure.target import Target
from nnopt.models import build_model, load_model
from nnopt.models.base import ModelConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a saved model folder (default: an untrained quickstart CNN; "
                    "latency does not depend on the weights)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU runtime ladder was not run")
        return 0
    torch.manual_seed(0)
    model = load_model(args.model) if args.model else build_model(
        ModelConfig(name="cnn", width=32, depth=2), (1, 28, 28), 10, [0.286], [0.353])
    model = model.eval()
    providers = onnxruntime().get_available_providers()
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "onnxruntime_providers": providers, "targets": {}}
    for batch in (64, 1):
        x = torch.randn(batch, 1, 28, 28)
        cands = {"torch-fp32": (model, {}), "torch-fp16": (torch_cast(model, "fp16"), {}),
                 "torch-bf16": (torch_cast(model, "bf16"), {}),
                 "torch-compile-fp16": (torch_cast(model, "fp16"), {"compile": True}),
                 "ort-cuda-fp32": (model, {"runtime": "onnxruntime"}),
                 "ort-tensorrt": (model, {"runtime": "onnxruntime", "tensorrt": True})}
        fns, skipped = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, (m, opts) in cands.items():
                t = Target(name="gpu", device="cuda", batch_size=batch, **opts)
                why = skip_reason(m, t)
                if name == "ort-tensorrt" and "TensorrtExecutionProvider" not in providers:
                    why = "this onnxruntime build has no TensorrtExecutionProvider"
                if why:
                    skipped[name] = why
                    continue
                work = Path(tmp) / name
                work.mkdir()
                fns[name] = target_runner(m, t, x, work)[0]
            timing = time_paired(fns, block_seconds=0.1, warmup=20)
        out["targets"][f"batch {batch}"] = {
            "ms": {k: round(timing.figure(k)["median_ms"], 4) for k in fns},
            "vs_torch_fp32": {k: timing.ratio("torch-fp32", k) for k in fns},
            "skipped": skipped}
    print(json.dumps(out, indent=2, default=lambda v: round(v, 4)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
