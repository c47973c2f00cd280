"""2:4 semi-structured sparse kernels against dense, on a CUDA GPU (fp16 F.linear).

Needs a CUDA GPU; without one it says so and exits 0 without a figure. For each shape it times
dense ``F.linear`` and the same weight pruned to 2:4 and converted with
``torch.sparse.to_sparse_semi_structured``, with CUDA events, median of many calls.

    python benchmarks/gpu_sparse24.py
"""

from __future__ import annotations

import json
import statistics

import torch
import torch.nn.functional as F

SHAPES = [(1024, 1024, 64), (4096, 4096, 64), (4096, 4096, 1024), (8192, 8192, 4096)]


def cuda_ms(fn, repeats: int = 100) -> float:  # noqa: ANN001
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU here: the 2:4 sparse kernel benchmark was not run")
        return 0
    from torch.sparse import to_sparse_semi_structured

    from nnopt.compress.prune.masks import nm_masks

    rows = []
    for out_f, in_f, batch in SHAPES:
        w = torch.randn(out_f, in_f, dtype=torch.float16, device="cuda")
        mask = nm_masks({"w": torch.nn.Parameter(w.float().cpu())}, 2, 4)["w"].cuda()
        w24 = w * mask
        sparse = to_sparse_semi_structured(w24)
        x = torch.randn(batch, in_f, dtype=torch.float16, device="cuda")
        dense_ms = cuda_ms(lambda: F.linear(x, w24))
        sparse_ms = cuda_ms(lambda: F.linear(x, sparse))
        err = (F.linear(x, w24) - F.linear(x, sparse)).abs().max().item()
        rows.append({"shape": [out_f, in_f], "batch": batch, "dense_ms": dense_ms,
                     "sparse_ms": sparse_ms, "speedup": dense_ms / sparse_ms, "max_abs_err": err})
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
