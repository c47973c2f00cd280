"""Paired timing: candidates timed side by side in one process, interleaved over rounds, so that
a ratio between two of them compares the same machine states.

Every round times a block of calls of each candidate (about ``block_seconds`` each, the order
rotating from round to round). A candidate's figure is the median of all its calls, its spread
p10-p90 of the calls; a ratio is the median of the per-round ratios of block medians, its spread
their p10-p90. A figure whose round medians spread wider than ``NOISY`` (p90/p10) gets more
rounds; still wide, or timed while other processes used more than ``BUSY`` of the CPUs, it is
flagged ``noisy`` and must not be headlined.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

NOISY = 1.5  # p90/p10 of the round medians above which a figure is too noisy to trust
BUSY = 0.25  # share of all CPUs used by other processes above which the machine was busy


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linear between order statistics."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@contextmanager
def machine_load() -> Iterator[dict[str, Any]]:
    """Measure what else ran while the block ran: the 1-minute load average before and after,
    and the share of all CPUs that other processes used (machine busy ticks minus this
    process's own CPU time); ``busy`` when that share exceeded ``BUSY``."""
    out: dict[str, Any] = {"cpus": os.cpu_count() or 1}
    before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    j0, t0, wall0 = _cpu_jiffies(), os.times(), time.perf_counter()
    yield out
    j1, t1, wall = _cpu_jiffies(), os.times(), time.perf_counter() - wall0
    if before is not None:
        out["loadavg_1m"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    if j0 and j1 and j1[1] > j0[1] and wall > 0:
        share = (j1[0] - j0[0]) / (j1[1] - j0[1])  # all processes, as a share of all CPUs
        own = (t1.user - t0.user + t1.system - t0.system) / (wall * out["cpus"])
        out["other_cpu"] = round(max(0.0, share - own), 3)
        out["busy"] = out["other_cpu"] > BUSY


@dataclass
class Paired:
    """The calls of every candidate, per round; figures and ratios are read from them."""

    rounds: dict[str, list[list[float]]]
    load: dict[str, Any] = field(default_factory=dict)

    def block_medians(self, key: str) -> list[float]:
        return [statistics.median(r) for r in self.rounds[key]]

    def wide(self, key: str) -> bool:
        med = self.block_medians(key)
        return quantile(med, 0.9) > NOISY * quantile(med, 0.1)

    def figure(self, key: str) -> dict[str, Any]:
        """Median, p10 and p90 of all calls (ms), the round medians' p10-p90, the calls and
        rounds, and ``noisy`` with its reason."""
        calls = [t for r in self.rounds[key] for t in r]
        med = self.block_medians(key)
        out = {"median_ms": statistics.median(calls), "p10_ms": quantile(calls, 0.1),
               "p90_ms": quantile(calls, 0.9), "min_ms": min(calls),
               "round_p10_ms": quantile(med, 0.1), "round_p90_ms": quantile(med, 0.9),
               "repeats": len(calls), "rounds": len(med)}
        why = self.noise(key)
        out["noisy"] = bool(why)
        if why:
            out["noisy_why"] = why
        return out

    def noise(self, *keys: str) -> str:
        if self.load.get("busy"):
            return (f"the machine was busy: other processes used {100 * self.load['other_cpu']:.0f}"
                    f"% of the CPUs while timing")
        wide = [k for k in keys if self.wide(k)]
        if wide:
            return (f"round medians of {', '.join(wide)} spread more than {NOISY}x (p90/p10) "
                    f"after {len(self.rounds[wide[0]])} rounds")
        return ""

    def ratio(self, slow: str, fast: str) -> dict[str, Any]:
        """How many times faster ``fast`` ran than ``slow``: the median of the per-round ratios
        of block medians, their p10-p90, and ``noisy`` (either figure noisy or the ratios
        spreading wider than ``NOISY``)."""
        r = [a / b for a, b in zip(self.block_medians(slow), self.block_medians(fast))]
        out = {"ratio": statistics.median(r), "p10": quantile(r, 0.1), "p90": quantile(r, 0.9)}
        why = self.noise(slow, fast)
        if not why and out["p90"] > NOISY * out["p10"]:
            why = f"per-round ratios spread more than {NOISY}x (p90/p10)"
        out["noisy"] = bool(why)
        if why:
            out["noisy_why"] = why
        return out


def paced(target: Any) -> dict[str, Any]:
    """A target's timing settings as ``time_paired`` options: its warm-up calls, and blocks of
    a tenth of its ``min_seconds`` (0.05 s by default)."""
    return {"warmup": target.warmup, "block_seconds": target.min_seconds / 10}


def _calls(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def time_paired(fns: Mapping[str, Callable[[], object]], *, rounds: int = 7,
                max_rounds: int = 21, block_seconds: float = 0.05, warmup: int = 5,
                max_seconds: float = 120.0,
                on_round: Callable[[int, int], None] | None = None) -> Paired:
    """Time every callable in ``fns`` side by side: ``warmup`` untimed calls each, then rounds
    in which each runs a block of about ``block_seconds`` (the order rotating). While a
    figure's round medians spread wider than ``NOISY``, 7 more rounds run, up to
    ``max_rounds`` and ``max_seconds``. ``on_round(done, planned)`` reports progress."""
    keys = list(fns)
    size: dict[str, int] = {}
    for k in keys:
        first = _calls(fns[k], max(1, warmup))
        size[k] = max(3, min(2000, math.ceil(block_seconds / max(min(first), 1e-4) * 1e3)))
    result = Paired({k: [] for k in keys})
    gc_was = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        with machine_load() as load:
            planned, done = rounds, 0
            while done < planned:
                order = keys[done % len(keys):] + keys[:done % len(keys)]
                for k in order:
                    result.rounds[k].append(_calls(fns[k], size[k]))
                done += 1
                if done == planned and planned < max_rounds \
                        and time.perf_counter() - start < max_seconds / 2 \
                        and any(result.wide(k) for k in keys):
                    planned = min(max_rounds, planned + 7)
                if on_round:
                    on_round(done, planned)
    finally:
        if gc_was:
            gc.enable()
    result.load = load
    return result
