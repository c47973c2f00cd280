"""Pareto dominance for minimisation: non-dominated sorting (Deb et al. 2002) and the
hypervolume dominated by a set of points up to a reference point (Zitzler & Thiele 1998),
computed exactly by slicing along the first objective."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b in every objective and better in at least one (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Rank 0 for the non-dominated points, 1 for those dominated only by rank 0, and so on."""
    ranks = [-1] * len(points)
    left = set(range(len(points)))
    rank = 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [i for i, r in enumerate(pareto_ranks(points)) if r == 0]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (points beyond it count
    only within it; a point not better than the reference in every objective adds nothing)."""
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    if not inside:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in inside)
    inside.sort()
    volume = 0.0
    for i, p in enumerate(inside):  # slab between this point's first objective and the next
        right = inside[i + 1][0] if i + 1 < len(inside) else reference[0]
        width = right - p[0]
        if width > 0:
            volume += width * hypervolume([q[1:] for q in inside[:i + 1]], reference[1:])
    return volume
