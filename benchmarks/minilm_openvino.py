"""MiniLM (all-MiniLM-L6-v2) as int8 on OpenVINO (NNCF post-training, transformer preset)
against ONNX Runtime's dynamic int8, on the same 512 generated sentences (sequence length 32):
embedding fidelity to PyTorch fp32 and latency, every candidate timed side by side in one
process (paired rounds) on the server (batch 64, 2 threads) and edge (batch 1, 1 thread) shapes.

Threshold: mean embedding cosine to fp32 >= 0.98 for both int8 models.

    .venv/bin/python benchmarks/minilm_openvino.py
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import torch

from nnopt.compress.quantize.export import onnx_bytes
from nnopt.compress.quantize.ort import choose_weight_type, quantize_onnx
from nnopt.core.environment import cpu_flags
from nnopt.data.sentences import make_sentences
from nnopt.measure.embedding import mean_cosine, neighbour_agreement
from nnopt.measure.openvino_rt import compile_ir, core, openvino, ov_runner
from nnopt.measure.paired import time_paired
from nnopt.measure.runtimes import onnx_runner, torch_runner, torch_threads
from nnopt.models.minilm import load_minilm, tokenize

TARGETS = {"server": (64, 2), "edge": (1, 1)}


def nncf_int8(fp32: bytes, ids: torch.Tensor):  # noqa: ANN201  (an openvino.Model)
    openvino()
    import nncf

    nncf.set_log_level(logging.ERROR)
    data = nncf.Dataset([ids[i:i + 8].numpy() for i in range(0, 256, 8)])
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(core().read_model(model=fp32), data,
                             model_type=nncf.ModelType.TRANSFORMER, subset_size=256)


def main() -> int:
    sentences, _ = make_sentences(512, seed=0)
    ids = tokenize(sentences, max_length=32)
    model = load_minilm().eval()
    with torch.inference_mode():
        ref = torch.cat([model(ids[i:i + 64]) for i in range(0, len(ids), 64)])
    fp32 = onnx_bytes(model, ids[:2])
    wtype, _ = choose_weight_type("auto")
    ort8 = quantize_onnx(fp32, mode="dynamic", weight_type=wtype, per_channel=True,
                         reduce_range=False)
    ov8 = nncf_int8(fp32, ids)
    ov32 = core().read_model(model=fp32)
    compiled = compile_ir(ov8, 2)
    got_ov = torch.cat([torch.from_numpy(np.array(compiled(ids[i:i + 64].numpy())[0]))
                        for i in range(0, len(ids), 64)])
    got_ort = torch.cat([torch.from_numpy(onnx_runner(ort8, ids[i:i + 64], 2)()[0])
                         for i in range(0, len(ids), 64)])
    result = {"cpu_flags": [f for f in cpu_flags() if "avx" in f or "amx" in f],
              "ort_weight_type": wtype,
              "fidelity": {"ort-int8": {"mean_cosine": mean_cosine(ref, got_ort),
                                        "neighbours": neighbour_agreement(ref, got_ort)},
                           "openvino-int8": {"mean_cosine": mean_cosine(ref, got_ov),
                                             "neighbours": neighbour_agreement(ref, got_ov)}},
              "targets": {}}
    for t, (batch, threads) in TARGETS.items():
        x = ids[:batch]
        with torch_threads(threads):
            fns = {"torch-fp32": torch_runner(model, x),
                   "ort-fp32": onnx_runner(fp32, x, threads),
                   "ort-int8": onnx_runner(ort8, x, threads),
                   "openvino-fp32": ov_runner(ov32, x, threads),
                   "openvino-int8": ov_runner(ov8, x, threads)}
            timing = time_paired(fns, block_seconds=0.1, warmup=5)
        fig = {k: timing.figure(k) for k in fns}
        result["targets"][t] = {
            "ms": {k: round(f["median_ms"], 3) for k, f in fig.items()},
            "noisy": any(f["noisy"] for f in fig.values()),
            "ov_int8_vs_ort_int8": timing.ratio("ort-int8", "openvino-int8"),
            "ov_int8_vs_ov_fp32": timing.ratio("openvino-fp32", "openvino-int8"),
            "ort_int8_vs_ort_fp32": timing.ratio("ort-fp32", "ort-int8"),
            "ov_fp32_vs_ort_fp32": timing.ratio("ort-fp32", "openvino-fp32")}
    print(json.dumps(result, indent=2, default=lambda v: round(v, 4)))
    ok = all(f["mean_cosine"] >= 0.98 for f in result["fidelity"].values())
    for k, f in result["fidelity"].items():
        print(f"{'PASS' if f['mean_cosine'] >= 0.98 else 'FAIL'}: {k} mean cosine to fp32 "
              f"{f['mean_cosine']:.4f} (need >= 0.98)")
    for t, r in result["targets"].items():
        v = r["ov_int8_vs_ort_int8"]
        print(f"{t}: OpenVINO int8 {r['ms']['openvino-int8']} ms vs ONNX Runtime int8 "
              f"{r['ms']['ort-int8']} ms: {v['ratio']:.2f}x (paired p10-p90 {v['p10']:.2f}-"
              f"{v['p90']:.2f}){' noisy' if v['noisy'] else ''}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
