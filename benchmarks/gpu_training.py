"""Training on a CUDA GPU, checked and measured (issue 27's GPU acceptance), in parts:

- ``smoke``: every recipe in recipes/ on tiny settings with ``--set device=cuda`` (each step's
  code path on the device: training, evaluation, attacks, calibration, SSL, NAS, distillation);
- ``speed``: the quickstart CNN's training throughput (one epoch of Fashion-MNIST's 54,000
  training images) on the CPU and on the GPU in fp32, bf16, bf16 + channels-last and under
  torch.compile, each configuration one epoch per round in turn (paired rounds);
- ``same``: the quickstart's training stage on the CPU and on the GPU from the same seed: test
  accuracy both ways (results must not depend on the device beyond floating-point noise);
- ``ssl-speed``: SimCLR pre-training of recipes/ssl.yaml's encoder, one epoch on 12,800 images,
  CPU against GPU;
- ``ssl``: the self-supervised acceptance (benchmarks/selfsup.py: 600 labels, 3 label seeds)
  rerun on the GPU with ``--ssl-epochs`` of pre-training instead of 20.

Without a CUDA device it prints one line and exits 0. On a lent GPU machine:
``benchmarks/gpu_check.sh`` (README, "Training on a GPU") installs what is missing there and runs
every part within the device time; the results land in ``--out`` as JSON and text.

    python benchmarks/gpu_training.py [smoke speed same ssl-speed ssl] [--out runs/gpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("smoke", "speed", "same", "ssl-speed", "ssl")


def nnopt(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnopt", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


# the recipes that exercise the most device code first (the smoke stops at its time budget)
FIRST = ("quickstart", "adversarial", "ssl", "uncertainty", "noisy-labels", "prune-distill-int8",
         "nas", "calibrate", "robustness-int8", "capsnet", "clean-labels", "hybrid")


def smoke(out: Path, gpu: str, budget: float) -> dict:
    """Every recipe on tiny settings on the device, in this process (one import), the most
    telling first, until ``budget`` seconds have passed."""
    sys.path.insert(0, str(ROOT / "tests"))
    from nnopt.cli import main as nnopt_main
    from test_recipes_run import tiny_overrides

    recipes = sorted((ROOT / "recipes").glob("*.yaml"),
                     key=lambda p: (FIRST.index(p.stem) if p.stem in FIRST else len(FIRST),
                                    p.stem))
    results: dict[str, dict] = {}
    began = time.perf_counter()
    for recipe in recipes:
        if time.perf_counter() - began > budget:
            results[recipe.stem] = {"not_run": "time budget spent"}
            continue
        sets = [f"device={gpu}", *tiny_overrides(recipe)]
        start = time.perf_counter()
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = nnopt_main(["run", str(recipe), "--out", str(out / "smoke" / recipe.stem),
                               "--quiet", *[a for s in sets for a in ("--set", s)]])
        lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("nnopt: error")]
        if code and lines and "the optional package" in lines[-1]:
            results[recipe.stem] = {"skipped": lines[-1]}  # an extra not carried there
        else:
            results[recipe.stem] = {"ok": code == 0,
                                    "seconds": round(time.perf_counter() - start, 1),
                                    **({} if code == 0 else {"error": lines[-3:]})}
        print(f"smoke {recipe.stem}: {results[recipe.stem]}", flush=True)
    return results


def _quickstart_data(limit: int | None = None):
    from nnopt.data import load_data
    from nnopt.recipe import resolve

    r = resolve({"data": {"name": "fashion-mnist", **({"limit": limit} if limit else {})},
                 "model": {"name": "cnn", "width": 32, "depth": 2}})
    return r, load_data(r.data)


def speed(gpu: str, samples: int | None, rounds: int = 3) -> dict:
    from nnopt.core.compute import on_device
    from nnopt.models import build_model
    from nnopt.train import TrainConfig, fit

    r, data = _quickstart_data(samples)
    configs = {"cpu fp32": ("cpu", {}), "gpu fp32": (gpu, {}),
               "gpu bf16": (gpu, {"precision": "bf16"}),
               "gpu bf16 channels-last": (gpu, {"precision": "bf16", "channels_last": True}),
               "gpu fp32 torch.compile": (gpu, {"compile": True})}
    models = {}
    for name in configs:
        torch.manual_seed(0)
        models[name] = build_model(r.model, data.input_shape, data.num_classes, data.mean,
                                   data.std)
    secs: dict[str, list[float]] = {n: [] for n in configs}
    for k in range(rounds + 1):  # round 0: warm-up (and compilation)
        for name, (dev, opts) in configs.items():
            with on_device(torch.device(dev)):
                state = fit(models[name], data.train, seed=k, config=TrainConfig(
                    epochs=1, batch_size=128, lr=2e-3, select_best=False, **opts))
            secs[name].append(state.history[0]["train_seconds"])
        print(f"speed round {k}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in secs.items()),
              flush=True)
    base = secs["cpu fp32"][1:]
    return {n: {"images_per_s": round(len(data.train) / statistics.median(s[1:]), 1),
                "speed_vs_cpu": round(statistics.median(b / x for b, x in zip(base, s[1:])), 2),
                "warmup_extra_s": round(s[0] - statistics.median(s[1:]), 2)}
            for n, s in secs.items()} | {"cpu_threads": torch.get_num_threads()}


def same(out: Path, gpu: str) -> dict:
    res = {}
    for label, dev in (("cpu", "cpu"), ("gpu", gpu)):
        done = nnopt("run", "recipes/quickstart.yaml", "--out", str(out / f"same-{label}"),
                     "--quiet", "--set", f"device={dev}", "--set", "evaluate=[accuracy,nll]",
                     "--set", "stages=[{train: {epochs: 4, lr: 0.002, batch_size: 128, "
                     "weight_decay: 0.0001}}]", timeout=1200)
        if done.returncode:
            res[label] = {"error": done.stderr.strip().splitlines()[-3:]}
            continue
        r = json.loads((out / f"same-{label}" / "results.json").read_text())
        st = r["stages"][0]
        res[label] = {"device": r["environment"]["device"],
                      "accuracy": st["metrics"]["accuracy"], "nll": st["metrics"]["nll"],
                      "train_seconds": round(sum(h["train_seconds"]
                                                 for h in st["details"]["history"]), 1)}
    if "accuracy" in res.get("cpu", {}) and "accuracy" in res.get("gpu", {}):
        res["accuracy_difference_points"] = round(
            100 * (res["gpu"]["accuracy"] - res["cpu"]["accuracy"]), 2)
    return res


def ssl_speed(gpu: str, samples: int | None) -> dict:
    from nnopt.core.compute import on_device
    from nnopt.learn.selfsup.pretrain import PretrainConfig, make_task
    from nnopt.models import build_model
    from nnopt.recipe import resolve
    from nnopt.train import fit

    raw = yaml.safe_load((ROOT / "recipes/ssl.yaml").read_text())
    r = resolve({"data": {"name": "fashion-mnist", "limit": samples or 12800},
                 "model": raw["model"]})
    from nnopt.data import load_data

    data = load_data(r.data)
    cfg = PretrainConfig(**{k: v for k, v in raw["stages"][0]["pretrain"].items()
                            if k != "monitor_every"})
    res = {}
    for label, dev in (("cpu", "cpu"), ("gpu", gpu)):
        torch.manual_seed(0)
        model = build_model(r.model, data.input_shape, data.num_classes, data.mean, data.std)
        times = []
        for k in range(3):  # the first: warm-up
            train = cfg.train.model_copy(update={"epochs": 1, "precision": "bf16"
                                                 if label == "gpu" else "fp32"})
            with on_device(torch.device(dev)):
                st = fit(model, data.train, config=train, task=make_task(
                    cfg, data.input_shape, k), seed=k)
            times.append(st.history[0]["train_seconds"])
            if label == "cpu":
                break  # one epoch on the CPU is enough (and slow)
        res[label] = {"epoch_seconds": round(times[-1], 2),
                    "images_per_s": round(len(data.train) / times[-1], 1)}
    res["speed_up"] = round(res["cpu"]["epoch_seconds"] / res["gpu"]["epoch_seconds"], 1)
    return res


def ssl(out: Path, epochs: int, gpu: str) -> dict:
    raw = yaml.safe_load((ROOT / "recipes/ssl.yaml").read_text())
    raw["device"] = gpu
    raw["stages"][0]["pretrain"]["train"]["precision"] = "bf16"  # native on a GPU
    raw["stages"][0]["pretrain"]["train"]["epochs"] = epochs
    raw["stages"][0]["pretrain"]["monitor_every"] = max(1, epochs // 5)
    path = out / "ssl-gpu.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/selfsup.py"), "--out",
                           str(out / "ssl-bench"), "--recipe", str(path)], cwd=ROOT, text=True,
                          capture_output=True, timeout=3000)
    (out / "ssl.txt").write_text(done.stdout + done.stderr)
    return {"pretrain_epochs": epochs, "exit": done.returncode,
            "seconds": round(time.perf_counter() - start, 1),
            "lines": [ln for ln in done.stdout.splitlines() if ln.startswith(("PASS", "FAIL",
                                                                               "pre-training"))]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", choices=[*PARTS, []], help="default: all")
    ap.add_argument("--out", default="runs/gpu")
    ap.add_argument("--ssl-epochs", type=int, default=100)
    ap.add_argument("--smoke-seconds", type=float, default=120,
                    help="smoke: start no recipe after this many seconds")
    ap.add_argument("--samples", type=int, help="training images of speed and ssl-speed (default: "
                    "54,000 and 12,800; fewer for a dry run)")
    ap.add_argument("--device", default="cuda", help="the device the GPU parts use (cpu: a dry "
                    "run of this script's code on a machine without a GPU)")
    args = ap.parse_args()
    gpu = args.device
    if gpu != "cpu" and not torch.cuda.is_available():
        print("no CUDA GPU here: the GPU training checks were not run")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"gpu": torch.cuda.get_device_name(0) if gpu != "cpu" else None,
               "torch": torch.__version__,
               "cpu_count": os.cpu_count()}
    for part in args.parts or PARTS:
        start = time.perf_counter()
        run = {"smoke": lambda: smoke(out, gpu, args.smoke_seconds),
               "speed": lambda: speed(gpu, args.samples), "same": lambda: same(out, gpu),
               "ssl-speed": lambda: ssl_speed(gpu, args.samples),
               "ssl": lambda: ssl(out, args.ssl_epochs, gpu)}
        results[part] = run[part]()
        print(f"{part} ({time.perf_counter() - start:.0f} s): {json.dumps(results[part])}",
              flush=True)
        (out / "gpu_training.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
