"""Report section for weight-agnostic searches: the found network against random topologies of
its size over the shared-weight sweep, the search history, and the network drawn."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

from nnopt.models.wann import ACTIVATIONS
from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, register_section


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _sweep_figure(doc: Doc, lab: str, w: dict[str, Any], figs: Path) -> None:
    c = w["test_curve"]
    fig, ax = plots.subplots(figsize=(6, 3.6))
    ax.plot(c["weights"], [100 * a for a in c["found"]], marker=".", color="tab:red",
            label="found topology")
    rand = [[100 * a for a in r] for r in c["random"]]
    mid = [statistics.median(col) for col in zip(*rand)]
    ax.plot(c["weights"], mid, color="tab:gray", label=f"random topologies (median of "
            f"{len(rand)})")
    ax.fill_between(c["weights"], [min(col) for col in zip(*rand)],
                    [max(col) for col in zip(*rand)], color="tab:gray", alpha=0.25)
    for x in w["weights"]:
        ax.axvline(x, color="tab:blue", lw=0.6, alpha=0.4)
    ax.axvline(w["tuning"]["weight"], color="gold", lw=2, label="tuned weight")
    ax.set(xlabel="shared weight", ylabel="test accuracy (%)",
           title=f"{lab}: accuracy over the shared weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    doc.figure(_save(fig, figs / f"wann_sweep_{lab}.png"), f"{lab}: test accuracy at each "
               "shared-weight value (blue lines: the values the search judged on)")


def _history_figure(doc: Doc, lab: str, w: dict[str, Any], figs: Path) -> None:
    h = w["generations"]
    fig, ax = plots.subplots(figsize=(6, 3.4))
    gens = [g["generation"] for g in h]
    ax.plot(gens, [100 * g["best_mean_accuracy"] for g in h], label="best mean accuracy")
    ax.plot(gens, [100 * g["median_mean_accuracy"] for g in h], label="median")
    ax.set(xlabel="generation", ylabel="training accuracy over the weights (%)")
    ax2 = ax.twinx()
    ax2.plot(gens, [g["connections_of_best"] for g in h], color="tab:gray", ls="--")
    ax2.set_ylabel("connections of the best (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    doc.figure(_save(fig, figs / f"wann_history_{lab}.png"), f"{lab}: the search, generation "
               "by generation")


def layers(genome: dict[str, Any]) -> dict[str, int]:
    """Each node's depth: inputs 0, a node one more than its deepest source, outputs last."""
    depth: dict[str, int] = {}
    incoming: dict[str, list[str]] = {}
    for s, d in genome["connections"]:
        incoming.setdefault(d, []).append(s)
    for n in genome["hidden"]:
        name = f"h{n['id']}"
        depth[name] = 1 + max((depth.get(s, 0) for s in incoming.get(name, [])), default=0)
    last = 1 + max(depth.values(), default=0)
    for k in range(len(genome["output_activations"])):
        depth[f"o{k}"] = last
    return depth


def _diagram(doc: Doc, lab: str, w: dict[str, Any], figs: Path) -> None:
    g = w["genome"]
    depth = layers(g)
    used = sorted({s for s, _ in g["connections"] if not s.startswith("h")},
                  key=lambda s: (s != "bias", int(s[1:]) if s != "bias" else -1))
    pos: dict[str, tuple[float, float]] = {}
    for i, s in enumerate(used):
        pos[s] = (0.0, 1 - i / max(len(used) - 1, 1))
    columns: dict[int, list[str]] = {}
    for n, d in depth.items():
        columns.setdefault(d, []).append(n)
    for d, names in columns.items():
        for i, n in enumerate(names):
            pos[n] = (float(d), 1 - (i + 0.5) / len(names))
    acts = {f"h{n['id']}": n["activation"] for n in g["hidden"]}
    acts |= {f"o{k}": a for k, a in enumerate(g["output_activations"])}
    palette = dict(zip(ACTIVATIONS, matplotlib.colormaps["tab10"].colors))
    fig, ax = plots.subplots(figsize=(8, 6))
    for s, d in g["connections"]:
        (x0, y0), (x1, y1) = pos[s], pos[d]
        ax.plot([x0, x1], [y0, y1], color="black", lw=0.4, alpha=0.35, zorder=1)
    ax.scatter([pos[s][0] for s in used], [pos[s][1] for s in used], s=10, color="lightgray",
               edgecolor="black", lw=0.3, zorder=2)
    for a in sorted(set(acts.values())):
        names = [n for n, b in acts.items() if b == a]
        ax.scatter([pos[n][0] for n in names], [pos[n][1] for n in names], s=60,
                   color=palette[a], edgecolor="black", lw=0.5, label=a, zorder=3)
    for k in range(len(g["output_activations"])):
        x, y = pos[f"o{k}"]
        ax.annotate(f"class {k}", (x, y), xytext=(6, 0), textcoords="offset points",
                    fontsize=7, va="center")
    last = max(depth.values(), default=1)
    ax.set_xlim(-0.2, last + 0.7)  # room for the class labels inside the axes
    ax.set_axis_off()
    ax.set_title(f"{lab}: {w['connections']} connections, {w['hidden']} hidden nodes; "
                 f"{len(used)} of {w['inputs']} inputs (and bias) used", fontsize=9)
    ax.legend(fontsize=7, title="activation", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    doc.figure(_save(fig, figs / f"wann_network_{lab}.png"), f"{lab}: the found network "
               "(inputs left, outputs right, every connection the same shared weight)")


@register_section
def wann_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    found = [(lab, r.details["wann"]) for lab, r in zip(labels, records)
             if r.details.get("wann")]
    if not found:
        return
    doc.h2("Weight-agnostic networks")
    for lab, w in found:
        sweep = w["test_sweep"]
        mine = _mean(sweep["found"])
        rand = [_mean(r) for r in sweep["random"]]
        t = w["tuning"]
        doc.p(f"Stage {lab}: {len(w['generations'])} generations; fitness = training accuracy "
              f"averaged over the shared weights {w['weights']} ({w['fitness_examples']} "
              "examples), with the number of connections as a second objective. The found "
              f"network has {w['connections']} connections and {w['hidden']} hidden nodes. "
              f"The shared weight was then tuned on the {t['split']} split: {t['weight']:.3g} "
              "(this stage's metrics use it).")
        doc.table(["network", "test accuracy, mean over the weights", "worst weight",
                   "best weight"],
                  [["found", f"{100 * mine:.2f}%", f"{100 * min(sweep['found']):.2f}%",
                    f"{100 * max(sweep['found']):.2f}%"],
                   [f"random topology, same size (mean of {len(rand)})",
                    f"{100 * _mean(rand):.2f}%",
                    f"{100 * _mean([min(r) for r in sweep['random']]):.2f}%",
                    f"{100 * _mean([max(r) for r in sweep['random']]):.2f}%"]])
        _sweep_figure(doc, lab, w, figs)
        _history_figure(doc, lab, w, figs)
        _diagram(doc, lab, w, figs)
