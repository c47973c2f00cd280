"""Issue 11 acceptance: capsule network, weight-agnostic network, hybrid models.

capsnet: recipes/capsnet.yaml (6 epochs) against a CNN of similar size (the capsnet's inference
         parameters, i.e. without the training-only decoder) trained and measured by the same
         recipe: test accuracy, ECE, PGD accuracy, accuracy on translated and rotated test
         images per severity; server latency side by side in this process.
wann:    recipes/wann.yaml on digits: the found network's test accuracy averaged over the six
         shared weights against random networks of the same size (connections and hidden
         nodes).
hybrid:  recipes/hybrid.yaml: the quickstart CNN end to end and with logistic-regression,
         gradient-boosted-tree and SVM heads on its features: accuracy and calibration side by
         side; latency side by side. Also recipes/convattn.yaml (conv + attention) beside it.

    python benchmarks/architectures.py [capsnet] [wann] [hybrid]      (all by default)
"""

from __future__ import annotations

import sys

from _common import Checks, finished_run, recipe_latency, run_parts
from nnopt.models.saving import load_model

SIMILAR_CNN = "model={name: cnn, width: 48, depth: 2, hidden: 144}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _inference_params(model) -> int:
    dec = getattr(model.net, "decoder", None)
    extra = sum(p.numel() for p in dec.parameters()) if dec is not None else 0
    return sum(p.numel() for p in model.parameters()) - extra


def capsnet(check: Checks) -> None:
    runs = {"capsnet": finished_run("recipes/capsnet.yaml", "runs/capsnet"),
            "cnn (similar size)": finished_run("recipes/capsnet.yaml", "runs/capsnet-cnn",
                                               (SIMILAR_CNN, "stages.0.train.lr=0.002"))}
    models = {k: load_model(f"runs/{d}/models/train")
              for k, d in (("capsnet", "capsnet"), ("cnn (similar size)", "capsnet-cnn"))}
    lat = recipe_latency("recipes/capsnet.yaml", models)
    print("| model | test accuracy | params (inference) | params (all) | ECE | PGD-20 eps 0.1 "
          "| translated | rotated | server latency (ms) | train seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    metrics = {}
    for k, rep in runs.items():
        st = rep.stages[0]
        m = metrics[k] = st.metrics
        print(f"| {k} | {_pct(m['accuracy'])} | {_inference_params(models[k])} | "
              f"{int(m['params'])} | {m['ece']:.4f} | {_pct(m.get('robust_accuracy/pgd'))} | "
              f"{_pct(m.get('corruption_accuracy/translate'))} | "
              f"{_pct(m.get('corruption_accuracy/rotate'))} | {lat[k]:.3f} | "
              f"{st.seconds:.0f} |")
    print("\naccuracy on shifted test images by severity (translate: 1-6 px of 28; "
          "rotate: 6-30 degrees), first 2,000 test images:\n")
    print("| model | corruption | clean | " + " | ".join(f"severity {s}" for s in range(1, 6))
          + " |")
    print("|---|---|---|" + "---|" * 5)
    for k, rep in runs.items():
        d = rep.stages[0].details["corruption"]
        for name, row in d["table"].items():
            print(f"| {k} | {name} | {_pct(d['clean_accuracy'])} | "
                  + " | ".join(_pct(row[str(s)]) for s in range(1, 6)) + " |")
    check(metrics["capsnet"]["accuracy"] >= 0.90,
          f"CapsNet test accuracy {_pct(metrics['capsnet']['accuracy'])} >= 90%")


def wann(check: Checks) -> None:
    rep = finished_run("recipes/wann.yaml", "runs/wann")
    st = rep.stages[0]
    w = st.details["wann"]
    found = w["test_sweep"]["found"]
    rand = w["test_sweep"]["random"]
    print(f"wann: {len(w['generations'])} generations x population, {w['connections']} "
          f"connections, {w['hidden']} hidden nodes, {st.seconds:.0f} s\n")
    print("| network | " + " | ".join(f"w={x:g}" for x in w["weights"]) + " | mean |")
    print("|---|" + "---|" * (len(w["weights"]) + 1))
    print("| found | " + " | ".join(_pct(a) for a in found)
          + f" | {_pct(sum(found) / len(found))} |")
    for i, r in enumerate(rand):
        print(f"| random {i + 1} | " + " | ".join(_pct(a) for a in r)
              + f" | {_pct(sum(r) / len(r))} |")
    mine = sum(found) / len(found)
    other = sum(sum(r) / len(r) for r in rand) / len(rand)
    print(f"\ntuned shared weight {w['tuning']['weight']:.3g}: test accuracy "
          f"{_pct(st.metrics['accuracy'])}")
    check(mine - other >= 0.20, f"found topology {_pct(mine)} vs random topologies of the same "
          f"size {_pct(other)} (mean over the weights): +{100 * (mine - other):.1f} points")


def hybrid(check: Checks) -> None:
    rep = finished_run("recipes/hybrid.yaml", "runs/hybrid")
    ca = finished_run("recipes/convattn.yaml", "runs/convattn")
    stages = [(st.name, st, f"runs/hybrid/models/{st.name}") for st in rep.stages]
    stages.append(("convattn", ca.stages[0], "runs/convattn/models/train"))
    models = {name: load_model(path) for name, _, path in stages}
    lat = recipe_latency("recipes/hybrid.yaml", models)
    print("| stage | head | test accuracy | NLL | ECE | Brier | params | server latency (ms) "
          "| fit seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    heads = {}
    for name, st, _ in stages:
        m = st.metrics
        head = (st.details.get("classical_head") or {}).get("head")
        if head:
            heads[head] = m["accuracy"]
        kind = head or {"train": "end to end", "convattn": "conv + attention, end to end"}.get(
            name, st.step)
        print(f"| {name} | {kind} | {_pct(m['accuracy'])} | {m['nll']:.4f} | {m['ece']:.4f} | "
              f"{m.get('brier', float('nan')):.4f} | {int(m.get('params', 0))} | "
              f"{lat[name]:.3f} | {st.seconds:.0f} |")
    cnn = rep.stages[0].metrics["accuracy"]
    for head, acc in heads.items():
        check(acc >= cnn - 0.01, f"CNN features + {head} head within 1 point of the end-to-end "
              f"CNN: {_pct(acc)} vs {_pct(cnn)} ({100 * (acc - cnn):+.2f})")


def main() -> int:
    return run_parts({"capsnet": capsnet, "wann": wann, "hybrid": hybrid})


if __name__ == "__main__":
    sys.exit(main())
