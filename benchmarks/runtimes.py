"""Issue 26's acceptance: the runtimes users ship to, side by side.

Runs the quickstart recipe (edge: batch 1, 1 thread, ONNX Runtime or ExecuTorch; server: batch
64, 2 threads, any runtime) and recipes/prune-deploy.yaml (channel pruning, then the same
per-target deployment), then reads the figures the runs measured: every deployment `quantize:
auto` timed side by side on each target (paired rounds, one process), and the timing pass after
the stages. Prints the ladder PyTorch fp32 -> ONNX Runtime fp32 -> ONNX Runtime int8 -> OpenVINO
fp32 -> OpenVINO int8 -> torch.ao int8 -> ExecuTorch, and PASS/FAIL lines:

- server: the deployed artifact >= 10x over PyTorch fp32 eager at <= 0.5 pt test accuracy loss;
- edge: >= 8x at <= 0.5 pt, with ExecuTorch's figures beside ONNX Runtime's;
- channel pruning -> best runtime: >= 15x on server over the unpruned PyTorch fp32 model at
  <= 1 pt.

    python benchmarks/runtimes.py [--out runs/runtimes] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from nnopt.core.environment import cpu_flags, environment

LADDER = [("PyTorch fp32", ["torch-fp32"]), ("ONNX Runtime fp32", ["onnxruntime-fp32"]),
          ("ONNX Runtime int8", ["ort-static", "ort-dynamic"]),
          ("OpenVINO fp32", ["openvino-fp32"]), ("OpenVINO int8", ["openvino-int8",
                                                                    "openvino-qdq"]),
          ("torch.ao int8", ["torch-static", "torch-dynamic"]),
          ("ExecuTorch fp32", ["executorch-fp32"]), ("ExecuTorch int8", ["executorch-int8"])]


def run(recipe: str, out: Path, reuse: bool) -> dict:
    if not (reuse and (out / "results.json").is_file()):
        subprocess.run([str(Path(sys.executable).parent / "nnopt"), "run", recipe, "--out",
                        str(out), "--quiet"], check=True)
    return json.loads((out / "results.json").read_text())


def stage(res: dict, name: str) -> dict:
    return next(s for s in res["stages"] if s["name"] == name)


def accuracy_on(res: dict, name: str, target: str) -> float:
    s = stage(res, name)
    return (s["details"].get("deployed_accuracy") or {}).get(target, s["metrics"]["accuracy"])


STEP_FROM = {"ONNX Runtime int8": "ONNX Runtime fp32", "OpenVINO int8": "OpenVINO fp32",
             "ExecuTorch int8": "ExecuTorch fp32"}  # every other rung: from PyTorch fp32


def ladder(cands: list[dict]) -> list[dict]:
    """One rung per runtime x precision (the fastest option of the rung), with its paired
    speed-up over PyTorch fp32 and its step's effect: a runtime's fp32 against PyTorch fp32 (the
    runtime effect), its int8 against its own fp32 (the precision effect), derived from the
    paired speed-ups over PyTorch fp32."""
    rows: list[dict] = []
    by = {c["deployment"]: c for c in cands}
    for label, names in LADDER:
        have = [by[n] for n in names if n in by]
        if not have:
            continue
        c = min(have, key=lambda r: r["latency_ms"])
        ref = next((r for r in rows if r["rung"] == STEP_FROM.get(label, "PyTorch fp32")), None)
        rows.append({"rung": label, "deployment": c["deployment"], "ms": c["latency_ms"],
                     "p10_ms": c["p10_ms"], "p90_ms": c["p90_ms"], "speedup": c["speedup"],
                     "speedup_p10": c["speedup_p10"], "speedup_p90": c["speedup_p90"],
                     "step": c["speedup"] / ref["speedup"] if ref else 1.0,
                     "step_from": ref["rung"] if ref else "-",
                     "val_acc": c["validation_accuracy"], "noisy": c["noisy"],
                     "runs_here": c.get("runs_here", True)})
    return rows


def table(rows: list[dict]) -> str:
    out = ["| rung | deployment | median ms (p10-p90) | vs PyTorch fp32 (paired p10-p90) | "
           "step effect | val acc | target can ship it |", "|---|---|---:|---:|---|---:|---|"]
    for r in rows:
        step = "-" if r["step_from"] == "-" else f"{r['step']:.2f}x over {r['step_from']}"
        out.append(f"| {r['rung']} | {r['deployment']} | {r['ms']:.4f} ({r['p10_ms']:.4f}-"
                   f"{r['p90_ms']:.4f}) | {r['speedup']:.2f}x ({r['speedup_p10']:.2f}-"
                   f"{r['speedup_p90']:.2f}){' noisy' if r['noisy'] else ''} | {step} | "
                   f"{100 * r['val_acc']:.2f}% | {'yes' if r['runs_here'] else 'no'} |")
    return "\n".join(out)


def check(ok: bool, text: str, lines: list[str]) -> bool:
    line = f"{'PASS' if ok else 'FAIL'}: {text}"
    print(line)
    lines.append(f"- {line}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/runtimes")
    ap.add_argument("--reuse", action="store_true", help="read runs already in --out")
    args = ap.parse_args()
    out = Path(args.out)
    env = environment()
    md = [f"CPU: {env['cpu']}; flags: {' '.join(f for f in cpu_flags() if 'avx' in f or 'amx' in f)}"
          f"; torch {env['torch']}, onnxruntime {env['onnxruntime']}"]
    quick = run("recipes/quickstart.yaml", out / "quickstart", args.reuse)
    pruned = run("recipes/prune-deploy.yaml", out / "prune-deploy", args.reuse)
    lines: list[str] = []
    ok = True
    q = stage(quick, "quantize")["details"]["quantization"]
    base = stage(quick, "train")["metrics"]["accuracy"]
    for target, need in (("server", 10.0), ("edge", 8.0)):
        rows = ladder(q["candidates"][target])
        md += [f"\n### Quickstart CNN, {target}\n", table(rows)]
        chosen = q["chosen"][target]
        c = next(r for r in q["candidates"][target] if r["deployment"] == chosen)
        loss = 100 * (base - accuracy_on(quick, "quantize", target))
        ok &= check(c["speedup"] >= need and loss <= 0.5 and not c["noisy"],
                    f"{target}: deployed {chosen} is {c['speedup']:.2f}x over PyTorch fp32 eager "
                    f"(paired p10-p90 {c['speedup_p10']:.2f}-{c['speedup_p90']:.2f}x; need >= "
                    f"{need:g}x) at {loss:+.2f} pt test accuracy loss (need <= 0.5)", lines)
    edge = {c["deployment"]: c for c in q["candidates"]["edge"]}
    beside = [f"{k} {edge[k]['latency_ms']:.4f} ms ({edge[k]['speedup']:.2f}x)"
              for k in ("onnxruntime-fp32", "ort-static", "executorch-fp32", "executorch-int8")
              if k in edge]
    print("edge, ExecuTorch beside ONNX Runtime: " + "; ".join(beside))
    lines.append("- edge, ExecuTorch beside ONNX Runtime: " + "; ".join(beside))
    p = stage(pruned, "quantize")
    lat = p["details"]["latency"]["server"]
    vs = lat.get("vs_first") or {}
    loss = 100 * (stage(pruned, "train")["metrics"]["accuracy"] - p["metrics"]["accuracy"])
    dep = p["details"]["deployed"]["server"]
    ok &= check(vs.get("ratio", 0) >= 15 and loss <= 1.0 and not vs.get("noisy"),
                f"prune -> {dep.get('deployment')} on server: {vs.get('ratio', 0):.2f}x over the "
                f"unpruned PyTorch fp32 model (paired p10-p90 {vs.get('p10', 0):.2f}-"
                f"{vs.get('p90', 0):.2f}x; need >= 15x) at {loss:+.2f} pt (need <= 1)", lines)
    pq = p["details"]["quantization"]
    for target in ("server", "edge"):
        md += [f"\n### Channel-pruned CNN, {target} (speed-ups over the pruned PyTorch fp32)\n",
               table(ladder(pq["candidates"][target]))]
    md += ["\n### Acceptance\n", *lines]
    (out / "runtimes.md").write_text("\n".join(md) + "\n")
    print(f"tables: {out / 'runtimes.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
