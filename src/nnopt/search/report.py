"""Report section for architecture searches: the budget, the Pareto front (table and figure,
the picked architecture marked) and the trial history with the best value so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnopt.report import plots
from nnopt.report.model import StageRecord
from nnopt.report.plots import _save
from nnopt.report.render import Doc, fmt, register_section


def _value(name: str, v: float | None) -> float | None:
    if v is None:
        return None
    return 100 * v if "accuracy" in name else v


def _label(name: str) -> str:
    if "accuracy" in name:
        return f"validation {name} (%)"
    if name.startswith(("latency_ms/", "predicted_latency_ms/")):
        kind, target = name.split("/", 1)
        return f"{target} latency (ms, {'predicted' if 'predicted' in kind else 'measured'})"
    return name


def _front_figure(doc: Doc, lab: str, s: dict[str, Any], figs: Path) -> None:
    (oy, ox), trials = s["objectives"][:2], [t for t in s["trials"] if not t["error"]]
    pts = [(t["metrics"].get(ox), t["metrics"].get(oy), t["number"]) for t in trials]
    pts = [p for p in pts if p[0] is not None and p[1] is not None]
    if not pts:
        return
    fig, ax = plots.subplots(figsize=(6, 4))
    ax.scatter([p[0] for p in pts], [_value(oy, p[1]) for p in pts], s=18, color="tab:gray",
               alpha=0.7, label="trial", zorder=2)
    front = sorted((p for p in pts if p[2] in s["front"]), key=lambda p: p[0])
    ax.plot([p[0] for p in front], [_value(oy, p[1]) for p in front], marker="o",
            color="tab:red", drawstyle="steps-post" if s["directions"][0] == "max" else None,
            label="Pareto front", zorder=3)
    pick = next(p for p in pts if p[2] == s["picked"]) if any(
        p[2] == s["picked"] for p in pts) else None
    if pick:
        ax.scatter([pick[0]], [_value(oy, pick[1])], marker="*", s=220, color="gold",
                   edgecolor="black", label=f"picked (trial {pick[2]})", zorder=4)
    ref = (s.get("reference") or {}).get("metrics", {})
    if ox in ref and oy in ref:
        ax.scatter([ref[ox]], [_value(oy, ref[oy])], marker="D", s=60, color="tab:blue",
                   label="reference model", zorder=4)
    ax.set(xlabel=_label(ox), ylabel=_label(oy), title=f"{lab}: {s['strategy']}, "
           f"{len(s['trials'])} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    doc.figure(_save(fig, figs / f"search_front_{lab}.png"), f"{lab}: every trial's objectives "
               "(validation split, proxy training), the Pareto front and the picked "
               "architecture")


def _history_figure(doc: Doc, lab: str, s: dict[str, Any], figs: Path) -> None:
    o, sign = s["objectives"][0], 1 if s["directions"][0] == "max" else -1
    xs, ys, best, run = [], [], [], None
    for t in s["trials"]:
        v = t["metrics"].get(o)
        if v is None:
            continue
        run = v if run is None or sign * v > sign * run else run
        xs.append(t["number"])
        ys.append(_value(o, v))
        best.append(_value(o, run))
    if not xs:
        return
    fig, ax = plots.subplots(figsize=(6, 3.4))
    ax.scatter(xs, ys, s=14, color="tab:gray", label="trial")
    ax.plot(xs, best, color="tab:blue", drawstyle="steps-post", label="best so far")
    ax.set(xlabel="trial", ylabel=_label(o), title=f"{lab}: search history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    doc.figure(_save(fig, figs / f"search_history_{lab}.png"), f"{lab}: the first objective per "
               "trial, in the order the strategy proposed them")


def _predictor_error(doc: Doc, s: dict[str, Any]) -> None:
    """Mean absolute percentage error of predicted against measured latency, per target."""
    for key in sorted({k for t in s["trials"] for k in t["metrics"]
                       if k.startswith("predicted_latency_ms/")}):
        real = "latency_ms/" + key.split("/", 1)[1]
        pairs = [(t["metrics"][key], t["metrics"][real]) for t in s["trials"]
                 if key in t["metrics"] and real in t["metrics"]]
        if pairs:
            mape = sum(abs(p - r) / r for p, r in pairs) / len(pairs)
            doc.p(f"Latency predictor ({key}) against measured {real} over {len(pairs)} "
                  f"trials: mean absolute percentage error {100 * mape:.1f}%.")


@register_section
def search_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    found = [(lab, r.details["search"]) for lab, r in zip(labels, records)
             if r.details.get("search")]
    if not found:
        return
    doc.h2("Architecture search")
    for lab, s in found:
        b = s["budget"]
        failed = sum(1 for t in s["trials"] if t["error"])
        doc.p(f"Stage {lab}: {s['strategy']} over a {s['space']['family']} space of "
              f"{s['space_size']} architectures; budget {b['trials']} trials x "
              f"{b['proxy_epochs']} proxy epoch(s) on {b['proxy_examples'] or 'all'} training "
              f"examples; {s['executor']} executor, {s['workers']} worker(s); {failed} failed. "
              "Objectives (" + ", ".join(f"{o} {d}" for o, d in zip(s["objectives"],
                                                                  s["directions"]))
              + ") are measured on the validation split after the proxy training, latency on "
              "the recipe's targets. The picked architecture (trial "
              f"{s['picked']}: {s['picked_arch']}) was retrained; this stage's metrics are "
              "that model's, on the test split.")
        names = list(dict.fromkeys([*s["objectives"], *s["constraints"]]))
        rows = [[str(t["number"]) + (" (picked)" if t["number"] == s["picked"] else ""),
                 ", ".join(f"{k}={v}" for k, v in t["arch"].items()),
                 *[fmt(n, t["metrics"].get(n)) for n in names], f"{t['seconds']:.1f}"]
                for t in sorted(s["trials"], key=lambda t: t["number"])
                if t["number"] in s["front"]]
        ref = s.get("reference")
        if ref:
            rows.append(["reference", ", ".join(f"{k}={v}" for k, v in ref["model"].items()),
                         *[fmt(n, ref["metrics"].get(n)) for n in names], "-"])
        if s.get("bounds"):
            doc.p("Constraints on the pick: " + ", ".join(
                f"{k} {'>=' if 'accuracy' in k else '<='} {fmt(k, v)}"
                for k, v in s["bounds"].items()) + ".")
        doc.table(["trial", "architecture", *names, "trial seconds"], rows)
        finals = s.get("finalists") or []
        if len(finals) > 1:
            doc.p(f"The {len(finals)} best architectures by proxy {s['objectives'][0]} within "
                  "the constraints were retrained in full; the pick is the best on the "
                  "validation split:")
            doc.table(["trial", "architecture", f"proxy {s['objectives'][0]}",
                       "retrained validation accuracy"],
                      [[str(f["number"]) + (" (picked)" if f["number"] == s["picked"] else ""),
                        ", ".join(f"{k}={v}" for k, v in f["arch"].items()),
                        fmt(s["objectives"][0], f["proxy"]), fmt("accuracy", f["retrained_val"])]
                       for f in finals])
        _predictor_error(doc, s)
        if len(s["objectives"]) >= 2:
            _front_figure(doc, lab, s, figs)
        _history_figure(doc, lab, s, figs)


def _alpha_figure(doc: Doc, lab: str, d: dict[str, Any], figs: Path) -> None:
    last = d["search"][-1]
    fig, axes = plots.subplots(1, 2, figsize=(10, 0.35 * len(last["alpha_normal"]) + 1.6))
    for ax, kind in zip(axes, ("normal", "reduce")):
        w = last[f"alpha_{kind}"]
        im = ax.imshow(w, cmap="viridis", aspect="auto")  # colours span this cell's range
        ax.set_xticks(range(len(d["ops"])), d["ops"], rotation=45, fontsize=8)
        labels, node, j = [], 0, 0
        for _ in w:  # rows are (node, input) in order: node 0 has inputs 0-1, node 1 0-2, ...
            labels.append(f"node {node} <- {j}")
            j += 1
            if j == node + 2:
                node, j = node + 1, 0
        ax.set_yticks(range(len(w)), labels, fontsize=7)
        ax.set_title(f"{kind} cell: softmax(alpha) (uniform: {1 / len(d['ops']):.3f})",
                     fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    doc.figure(_save(fig, figs / f"darts_alpha_{lab}.png"), f"{lab}: operation weights on "
               "every edge after the search (rows: node <- input state; 0 and 1 are the "
               "cell's inputs)")


@register_section
def darts_section(doc: Doc, labels: list[str], records: list[StageRecord], figs: Path) -> None:
    found = [(lab, r.details["darts"]) for lab, r in zip(labels, records)
             if r.details.get("darts")]
    if not found:
        return
    doc.h2("Differentiable architecture search (DARTS)")
    for lab, d in found:
        hist = d["search"]
        doc.p(f"Stage {lab}: {len(hist)} search epoch(s) on {d['search_examples']} training "
              "examples (weights on one half, architecture weights on the other, first-order); "
              f"supernet {d['supernet_params']} weights; supernet validation accuracy by "
              "epoch: " + ", ".join(f"{100 * h['supernet_val_accuracy']:.1f}%" for h in hist)
              + ". The derived network (two edges per node, genotype below) was retrained "
              "from scratch; this stage's metrics are its own.")
        rows = [[kind, str(i // 2), f"{op} <- state {j}"]
                for kind in ("normal", "reduce") for i, (op, j) in enumerate(d["genotype"][kind])]
        doc.table(["cell", "node", "operation"], rows)
        _alpha_figure(doc, lab, d, figs)
