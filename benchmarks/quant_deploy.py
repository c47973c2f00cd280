"""Deployment speed and accuracy: PyTorch fp32 eager vs ONNX Runtime fp32 vs the int8 artifact
nnopt chose, measured side by side (alternating rounds) on the server and edge targets.

Runs ``recipes/quantize.yaml`` unless ``--run DIR`` holds a finished run, then loads its saved
stage models (train = PyTorch fp32, export = ONNX Runtime fp32, quantize = the deployment chosen
by ``method: auto`` for the server target, quantize-2 = the 4-bit QAT model as real int8).
PyTorch-native int8 (torch.ao FX static, dynamic) is built from the fp32 model and timed beside
them. Thresholds: the chosen deployment >= 3x faster than PyTorch fp32 eager on the server
target and the best PyTorch int8 >= 2x, each with test accuracy within 0.5 point of fp32.

    .venv/bin/python benchmarks/quant_deploy.py [--run runs/quantize] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from nnopt.compress.quantize import torch_int8
from nnopt.compress.quantize.cast import onnx_fp16, torch_cast
from nnopt.compress.quantize.onnx_model import OnnxModel
from nnopt.compress.quantize.torch_int8 import TorchInt8Model
from nnopt.data import load_data
from nnopt.measure import Measurement
from nnopt.measure.latency import measure_target
from nnopt.measure.target import Target
from nnopt.models import load_model
from nnopt.recipe import resolve
from nnopt.train.fit import evaluate

TARGETS = [Target(name="server", runtime="torch", batch_size=64, threads=2),
           Target(name="edge", runtime="onnxruntime", batch_size=1, threads=1)]
STAGES = {"train": "PyTorch fp32 eager", "export": "ONNX Runtime fp32",
          "quantize": "chosen deployment (auto, server)", "quantize-2": "QAT w4a8 as ORT int8"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/quantize")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "results.json").is_file():
        subprocess.run([sys.executable, "-m", "nnopt", "run", "recipes/quantize.yaml", "--out",
                        str(run), "--quiet"], check=True)
    data = load_data(resolve({"data": {"name": "fashion-mnist"}, "model": {"name": "mlp"}}).data)
    models = {k: load_model(run / "models" / k) for k in STAGES if (run / "models" / k).is_dir()}
    for method in ("torch-static", "torch-dynamic"):  # int8 without leaving PyTorch
        q = torch_int8.build(models["train"], method, data.train.x[:512])
        models[method] = TorchInt8Model(q, {"source": models["train"].spec})
    models["torch-bf16"] = torch_cast(models["train"], "bf16")  # half precision, both runtimes
    models["ort-fp16"] = OnnxModel(onnx_fp16(models["export"].onnx_bytes), {})
    acc = {k: evaluate(m, data.test)["accuracy"] for k, m in models.items()}
    times = {t.name: {k: [] for k in models} for t in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        meas = {k: Measurement(m, data, TARGETS, Path(tmp) / k) for k, m in models.items()}
        for _ in range(args.rounds):
            for t in TARGETS:
                for k in models:
                    # the fp32 PyTorch model runs eager; artifacts run on ONNX Runtime
                    torch_side = k == "train" or k.startswith("torch-")  # else ONNX Runtime
                    tt = t.model_copy(update={"runtime": "torch" if torch_side else
                                              "onnxruntime"})
                    times[t.name][k].append(measure_target(meas[k], tt)["median_ms"])
    chosen = json.loads((run / "results.json").read_text())["stages"][2]["details"][
        "quantization"]["chosen"]
    out = {"chosen": chosen, "accuracy": acc, "targets": {}}
    for t in TARGETS:
        med = {k: statistics.median(v) for k, v in times[t.name].items()}
        out["targets"][t.name] = {k: {"ms": round(v, 4), "speedup_vs_torch_fp32":
                                      round(med["train"] / v, 2)} for k, v in med.items()}
    speed = out["targets"]["server"]["quantize"]["speedup_vs_torch_fp32"]
    ok = speed >= 3.0 and acc["train"] - acc["quantize"] <= 0.005
    best_torch = max(("torch-static", "torch-dynamic"),  # int8 paths only
                     key=lambda k: out["targets"]["server"][k]["speedup_vs_torch_fp32"])
    out["best_torch_int8"] = best_torch
    ok &= (out["targets"]["server"][best_torch]["speedup_vs_torch_fp32"] >= 2.0
           and acc["train"] - acc[best_torch] <= 0.005)
    print(json.dumps(out, indent=2))
    if not ok:
        print("FAIL: the chosen deployment misses 3x, or the best PyTorch int8 misses 2x, or "
              "one of them the 0.5 point accuracy bound",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
