"""Issue 10 acceptance 1, 2 and 4 on Fashion-MNIST.

front: recipes/nas.yaml (NSGA-II, 24 trials x 3 proxy epochs on 10,000 images, quickstart CNN as
       the latency reference, 3 finalists retrained) against the quickstart CNN trained alike
       (recipes/quickstart.yaml, its train stage); test accuracy from the runs, latency on the
       server target measured side by side in this process.
hv:    NSGA-II against random search at equal budget (60 trials x 3 proxy epochs on 3,000
       images, the space of recipes/nas.yaml), seeds 0-2: hypervolume of (validation accuracy,
       server latency) with one reference point for all six searches (accuracy 0, 1.1 x the
       slowest latency seen).
ray:   8 random-search trials (1 proxy epoch on 3,000 images) on a local Ray instance with 1
       and with 2 workers: wall time, and the trial accuracies of both (same seeds).

    python benchmarks/nas.py [front] [hv] [ray]      (all three by default)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from _common import Checks, finished_run, recipe_latency, run_parts
from nnopt.context import RunContext
from nnopt.models.saving import load_model
from nnopt.recipe import load_recipe
from nnopt.runner import prepare
from nnopt.search.nas import NasConfig, losses, run_search
from nnopt.search.pareto import hypervolume, pareto_front

RECIPE = "recipes/nas.yaml"
HV_TRIALS = 60  # per search; a rerun resumes the stored trials of a smaller budget


def front(check: Checks) -> None:
    nas = finished_run(RECIPE, "runs/nas")
    qs = finished_run("recipes/quickstart.yaml", "runs/quickstart")
    s = nas.stages[0].details["search"]
    print(f"search: {s['strategy']}, {len(s['trials'])} trials x {s['budget']['proxy_epochs']} "
          f"proxy epoch on {s['budget']['proxy_examples']} images, "
          f"{nas.stages[0].seconds:.0f} s with retraining; picked trial {s['picked']}: "
          f"{s['picked_arch']}")
    models = {"nas": load_model("runs/nas/models/nas"),
              "quickstart": load_model("runs/quickstart/models/train")}
    lat = recipe_latency(RECIPE, models, rounds=7)
    acc = {"nas": nas.stages[0].metrics["accuracy"],
           "quickstart": next(st for st in qs.stages if st.name == "train").metrics["accuracy"]}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    print("\n| model | test accuracy | server latency (ms, median of 7 rounds) | params |")
    print("|---|---|---|---|")
    for k in models:
        print(f"| {k} | {100 * acc[k]:.2f}% | {lat[k]:.3f} | {params[k]} |")
    check(acc["nas"] >= acc["quickstart"] and lat["nas"] <= lat["quickstart"],
          f"the searched architecture dominates the quickstart CNN: accuracy "
          f"{100 * acc['nas']:.2f}% vs {100 * acc['quickstart']:.2f}%, latency "
          f"{lat['nas']:.3f} vs {lat['quickstart']:.3f} ms ({lat['quickstart'] / lat['nas']:.2f}x)")


def _context(stage_overrides: list[str]) -> tuple[RunContext, NasConfig]:
    resolved = load_recipe(RECIPE, stage_overrides)
    data, _ = prepare(resolved)
    ctx = RunContext(recipe=resolved, data=data, out_dir=Path("runs/nas-bench"),
                     seed=resolved.recipe.seed, stage="nas")
    return ctx, resolved.stages[0].config


def hv(check: Checks) -> None:
    runs: dict[tuple[str, int], list[list[float]]] = {}
    for seed in (0, 1, 2):
        for strategy in ("nsga2", "random"):
            ctx, cfg = _context([f"seed={seed}", f"stages.0.nas.trials={HV_TRIALS}",
                                 "stages.0.nas.proxy.limit=3000",
                                 f"stages.0.nas.strategy={strategy}"])
            cfg = cfg.model_copy(update={"reference": None, "constraints": {}})
            start = time.perf_counter()
            found = run_search(cfg, ctx, Path(f"runs/nas-bench/{strategy}-{seed}"))
            pts = [p for p in (losses(r.metrics, cfg.objectives) for r in found.trials) if p]
            runs[(strategy, seed)] = pts
            print(f"{strategy} seed {seed}: {len(pts)} trials, front of "
                  f"{len(pareto_front(pts))}, {time.perf_counter() - start:.0f} s",
                  flush=True)
    ref = [0.0, 1.1 * max(p[1] for pts in runs.values() for p in pts)]
    print(f"\nhypervolume reference point: accuracy 0, latency {ref[1]:.3f} ms")
    print("\n| strategy | seed 0 | seed 1 | seed 2 | mean |")
    print("|---|---|---|---|---|")
    means = {}
    for strategy in ("nsga2", "random"):
        vols = [hypervolume(runs[(strategy, s)], ref) for s in (0, 1, 2)]
        means[strategy] = statistics.mean(vols)
        print(f"| {strategy} | " + " | ".join(f"{v:.4f}" for v in vols)
              + f" | {means[strategy]:.4f} |")
    check(means["nsga2"] >= means["random"], f"NSGA-II hypervolume {means['nsga2']:.4f} >= "
          f"random search {means['random']:.4f} (mean of 3 seeds, {HV_TRIALS} trials each)")


def _warm(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def ray(check: Checks) -> None:
    from nnopt.search.ray_executor import RayExecutor

    walls, accs = {}, {}
    executor = RayExecutor(num_cpus=2)  # one local instance for both runs
    list(executor.map(_warm, [0.5, 0.5]))  # both worker processes started before any timing
    try:
        for workers in (1, 2):
            ctx, cfg = _context(["stages.0.nas.trials=8", "stages.0.nas.proxy.limit=3000",
                                 "stages.0.nas.strategy=random", "stages.0.nas.executor=ray",
                                 f"stages.0.nas.workers={workers}"])
            cfg = cfg.model_copy(update={"reference": None, "constraints": {}})
            start = time.perf_counter()
            found = run_search(cfg, ctx, None, executor=executor)
            walls[workers] = time.perf_counter() - start
            accs[workers] = [r.metrics.get("accuracy") for r in found.trials]
            hosts = {r.environment["pid"] for r in found.trials}
            print(f"ray, {workers} worker(s): {walls[workers]:.1f} s for 8 trials in "
                  f"{len(hosts)} worker processes", flush=True)
    finally:
        executor.shutdown()
    print(f"\nspeed-up with 2 workers: {walls[1] / walls[2]:.2f}x")
    check(accs[1] == accs[2], "the same trial accuracies with 1 and 2 workers: "
          + ", ".join(f"{100 * a:.2f}" for a in accs[1] if a is not None))
    check(walls[2] < walls[1], f"2 workers finish sooner: {walls[2]:.1f} s vs {walls[1]:.1f} s")


def main() -> int:
    return run_parts({"front": front, "hv": hv, "ray": ray})


if __name__ == "__main__":
    sys.exit(main())
