"""Figures: accuracy against latency and size with the Pareto front, training curves, sweeps."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nnopt.core.fileio import atomic_write_bytes
from nnopt.measure.quantity import axis


@dataclass
class Point:
    """One model on a comparison figure."""

    label: str
    metrics: dict[str, float]
    history: list[dict[str, float]] | None = None


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of points not dominated when x is minimised and y maximised, sorted by x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], float("-inf")
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def label_groups(xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 near: float = 0.04) -> list[tuple[float, float, str]]:
    """One label per cluster of points closer than ``near`` of the axis ranges (their labels
    joined), so that labels of nearly equal models do not print over each other."""
    dx = (max(xs) - min(xs)) or 1.0
    dy = (max(ys) - min(ys)) or 1.0
    groups: list[tuple[float, float, list[str]]] = []
    for x, y, lab in sorted(zip(xs, ys, labels)):
        for gx, gy, names in groups:
            if abs(gx - x) / dx < near and abs(gy - y) / dy < near:
                names.append(lab)
                break
        else:
            groups.append((x, y, [lab]))
    return [(x, y, ", ".join(names)) for x, y, names in groups]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             layout: str | None = None, **kw: Any) -> tuple[Figure, Any]:
    """A figure and its axes like ``pyplot.subplots``, without pyplot: nnopt never switches
    matplotlib's backend or keeps figures in pyplot's state (a notebook's plots are left
    alone); the figure is drawn by the Agg canvas when saved."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


MIN_SPAN_PT = 1.0  # the accuracy axis spans at least this: 0.03 pt must not fill a panel


def _scatter(ax: Any, points: list[Point], xkey: str, ykey: str, xlabel: str,
             xscale: float = 1.0) -> bool:
    pts = [p for p in points if xkey in p.metrics and ykey in p.metrics]
    if not pts:
        return False
    xs = [p.metrics[xkey] / xscale for p in pts]
    ys = [100 * p.metrics[ykey] for p in pts]
    ax.scatter(xs, ys, s=36, zorder=3, label="model (stage)")
    for k, (x, y, text) in enumerate(label_groups(xs, ys, [p.label for p in pts])):
        ax.annotate(text, (x, y), textcoords="offset points", fontsize=8,
                    xytext=(6, 6 if k % 2 == 0 else -12),
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8}).set_in_layout(False)  # a long label never squeezes
    ax.margins(y=0.12)  # room for the labels of the outermost points
    # latency and size from zero (a 3% difference looks like one), room for the labels
    ax.set_xlim(0, max(xs) * 1.22 or 1.0)
    lo, hi = min(ys), max(ys)
    if hi - lo < MIN_SPAN_PT:  # a tiny difference drawn at its true scale
        mid = (hi + lo) / 2
        ax.set_ylim(mid - 0.6 * MIN_SPAN_PT, mid + 0.6 * MIN_SPAN_PT)
    front = pareto_front(xs, ys)
    if len(front) > 1:
        ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="tab:red",
                alpha=0.7, label="Pareto front", zorder=2)
    else:  # one model dominates: a line of one point draws nothing, a ring does
        ax.scatter([xs[front[0]]], [ys[front[0]]], s=140, facecolors="none",
                   edgecolors="tab:red", zorder=4, label="Pareto front (one model dominates)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    # below the panel, never over a point or its label
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
              frameon=False)
    return True


def accuracy_vs_latency(points: list[Point], targets: list[str], path: Path) -> Path | None:
    """One panel per target: accuracy against measured median latency."""
    keys = [t for t in targets if any(f"latency_ms/{t}" in p.metrics for p in points)]
    if not keys or not any("accuracy" in p.metrics for p in points):
        return None
    fig, axes = subplots(1, len(keys), figsize=(5 * len(keys), 4.2), squeeze=False,
                         layout="constrained")  # a panel's labels never run into the next
    for ax, t in zip(axes[0], keys):
        _scatter(ax, points, f"latency_ms/{t}", "accuracy", f"latency on '{t}' (ms, median)")
        ax.set_title(f"accuracy vs latency: {t}")
    return _save(fig, path)


def accuracy_vs_size(points: list[Point], path: Path) -> Path | None:
    """Accuracy against the saved file's size (and its compressed size when measured)."""
    keys = [k for k in ("size_bytes", "compressed_size_bytes")
            if any(k in p.metrics for p in points)]
    if not keys or not any("accuracy" in p.metrics for p in points):
        return None
    fig, axes = subplots(1, len(keys), figsize=(5 * len(keys), 4.2), squeeze=False,
                         layout="constrained")
    for ax, k in zip(axes[0], keys):
        _scatter(ax, points, k, "accuracy", f"{k.replace('_bytes', '')} (KiB)", xscale=1024)
        ax.set_title(f"accuracy vs {k.replace('_bytes', '').replace('_', ' ')}")
    return _save(fig, path)


def training_curves(points: list[Point], path: Path) -> Path | None:
    """Training loss and validation accuracy per epoch for every stage that trained."""
    trained = [p for p in points if p.history]
    if not trained:
        return None
    fig, (ax_l, ax_a) = subplots(1, 2, figsize=(10, 3.8))
    for p in trained:
        ep = [h["epoch"] for h in p.history]
        ax_l.plot(ep, [h["train_loss"] for h in p.history], marker=".", label=f"{p.label}: train")
        if "val_loss" in p.history[0]:  # markers: a run of one epoch is a point, not a line
            ax_l.plot(ep, [h["val_loss"] for h in p.history], ls="--", marker="x",
                      label=f"{p.label}: val")
        if "train_accuracy" in p.history[0]:
            ax_a.plot(ep, [100 * h["train_accuracy"] for h in p.history], marker=".",
                      label=f"{p.label}: train")
        if "val_accuracy" in p.history[0]:
            ax_a.plot(ep, [100 * h["val_accuracy"] for h in p.history], ls="--", marker="x",
                      label=f"{p.label}: val")
    ax_l.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    epochs = sorted({h["epoch"] for p in trained for h in p.history})
    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) < 3:  # no fractional ticks around a single epoch
            ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:  # e.g. self-supervised pre-training: a loss, no accuracy
            ax.text(0.5, 0.5, "not recorded by these stages", ha="center", va="center",
                    transform=ax.transAxes, color="gray")
    return _save(fig, path)


def sweep_curves(xs: list[Any], series: dict[str, list[float | None]], xlabel: str,
                 path: Path) -> Path | None:
    """One small panel per metric: the metric against the swept value."""
    series = {k: v for k, v in series.items()
              if len({y for y in v if y is not None}) > 1}  # constant metrics say nothing here
    if not series:
        return None
    n = len(series)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    pos = xs if numeric else list(range(len(xs)))
    for ax, (name, ys) in zip(axes.flat, series.items()):
        keep = [(x, y) for x, y in zip(pos, ys) if y is not None]
        scale, unit = axis(name)
        ax.plot([k[0] for k in keep], [k[1] * scale for k in keep], marker="o")
        ax.set_title(f"{name} ({unit})" if unit else name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        if not numeric:
            ax.set_xticks(pos, [str(x) for x in xs], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)
