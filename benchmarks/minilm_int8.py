"""MiniLM (all-MiniLM-L6-v2) as int8: ONNX Runtime dynamic int8 against fp32 on the same runtime,
with embedding fidelity, on 512 generated sentences (sequence length 32).

Thresholds: int8 >= 1.5x faster than ONNX Runtime fp32 on the server target (batch 64, 2 threads)
and mean embedding cosine to fp32 >= 0.98; nearest-neighbour agreement is reported beside it.

    .venv/bin/python benchmarks/minilm_int8.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from nnopt.compress.quantize.ort import choose_weight_type, integer_ops, quantize_onnx
from nnopt.data.sentences import make_sentences
from nnopt.measure.embedding import mean_cosine, neighbour_agreement
from nnopt.measure.latency import time_calls
from nnopt.measure.runtimes import export_onnx, onnx_runner, torch_runner, torch_threads
from nnopt.models.minilm import load_minilm, tokenize

TARGETS = {"server": (64, 2), "edge": (1, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sentences, _ = make_sentences(512, seed=0)
    ids = tokenize(sentences, max_length=32)
    model = load_minilm()
    with torch.inference_mode():
        ref = torch.cat([model(ids[i:i + 64]) for i in range(0, len(ids), 64)])
    wtype, why = choose_weight_type("auto")
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx", ids[:2])
        int8 = quantize_onnx(fp32_path.read_bytes(), mode="dynamic", weight_type=wtype,
                             per_channel=True, reduce_range=False)
        int8_path = Path(tmp) / "int8.onnx"
        int8_path.write_bytes(int8)
        sizes = {"fp32_onnx_bytes": fp32_path.stat().st_size, "int8_onnx_bytes": len(int8)}
        got = torch.cat([torch.from_numpy(onnx_runner(int8_path, ids[i:i + 64], 2)()[0])
                         for i in range(0, len(ids), 64)])
        times = {t: {"torch-fp32": [], "ort-fp32": [], "ort-int8": []} for t in TARGETS}
        for _ in range(args.rounds):
            for t, (batch, threads) in TARGETS.items():
                x = ids[:batch]
                with torch_threads(threads):
                    runs = {"torch-fp32": torch_runner(model, x),
                            "ort-fp32": onnx_runner(fp32_path, x, threads),
                            "ort-int8": onnx_runner(int8_path, x, threads)}
                    for k, fn in runs.items():
                        times[t][k].append(time_calls(fn, warmup=3, repeats=20,
                                                      min_seconds=0.5)["median_ms"])
    med = {t: {k: statistics.median(v) for k, v in d.items()} for t, d in times.items()}
    result = {"weight_type": wtype, "why": why, "integer_ops_as_run": integer_ops(int8), **sizes,
              "mean_cosine": mean_cosine(ref, got),
              "neighbour_agreement": neighbour_agreement(ref, got), "targets": {
                  t: {**{k: round(v, 3) for k, v in m.items()},
                      "int8_vs_ort_fp32": round(m["ort-fp32"] / m["ort-int8"], 2),
                      "ort_fp32_vs_torch": round(m["torch-fp32"] / m["ort-fp32"], 2)}
                  for t, m in med.items()}}
    print(json.dumps(result, indent=2))
    ok = (result["targets"]["server"]["int8_vs_ort_fp32"] >= 1.5
          and result["mean_cosine"] >= 0.98)
    if not ok:
        print("FAIL: int8 < 1.5x faster than fp32 on ONNX Runtime (server) or cosine < 0.98",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
