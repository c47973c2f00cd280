"""The recipe's question, answered per target: which stage to ship, under the recipe's
``decide:`` constraints (default: the fastest stage within 1 point of the first stage's
accuracy). Stages are ranked by their paired speed-up over the first stage on that target (the
same rounds), so a ranking never mixes machine states."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from nnopt.core.config import Strict

SAME = 1.05  # speeds within 5% are the same: a later stage must beat an earlier one by more

class DecideConfig(Strict):
    """Constraints a recommended stage must meet on every target (fractions: 0.01 = 1 pt)."""

    max_accuracy_drop: float = Field(0.01, ge=0, le=1, description="largest test accuracy "
                                     "loss against the first stage (0.01 = 1 pt)")
    max_ece: float | None = Field(None, ge=0, le=1, description="largest expected "
                                  "calibration error")
    min_robust_accuracy: float | None = Field(None, ge=0, le=1, description="smallest "
                                              "accuracy under `robust_attack`")
    robust_attack: str = Field("pgd", description="the attack min_robust_accuracy reads")
    latency_budget_ms: float | None = Field(None, gt=0, description="largest median latency "
                                            "of one batch on the target")
    max_size_bytes: int | None = Field(None, gt=0, description="largest file on disk")


def claimed(fig: dict[str, Any], ref: dict[str, Any] | None, vs: dict[str, Any] | None
            ) -> bool:
    """Whether a speed-up of ``fig`` over ``ref`` may be claimed: neither figure nor their
    paired ratio ``vs`` was flagged noisy (one rule for the answer, the conclusions and the
    terminal)."""
    return not (fig.get("noisy") or (ref or {}).get("noisy") or (vs or {}).get("noisy"))


def _speed(stage: dict[str, Any], target: str) -> float | None:
    """The stage's paired speed-up over the first stage on ``target`` (1 for the first)."""
    rec = (stage.get("latency") or {}).get(target) or {}
    if "median_ms" not in rec:
        return None
    return rec["vs_first"]["ratio"] if "vs_first" in rec else 1.0


def _accuracy(stage: dict[str, Any], target: str) -> float | None:
    """The stage's test accuracy as ``target`` runs it (its own artifact's, when it has one)."""
    own = (stage.get("accuracy_by_target") or {}).get(target)
    return own if own is not None else stage["metrics"].get("accuracy")


def violations(stage: dict[str, Any], first: dict[str, Any], target: str,
               cfg: DecideConfig) -> list[str]:
    """What keeps ``stage`` from being recommended on ``target`` ([] when nothing does)."""
    m, ref = dict(stage["metrics"]), first["metrics"]
    acc = _accuracy(stage, target)
    if acc is not None:
        m["accuracy"] = acc
    lat = ((stage.get("latency") or {}).get(target) or {})
    out = []
    if "median_ms" not in lat:
        out.append(f"no latency on '{target}' ({lat.get('skipped', 'not timed')})")
    if "accuracy" in m and "accuracy" in ref and ref["accuracy"] - m["accuracy"] > \
            cfg.max_accuracy_drop + 1e-12:
        out.append(f"accuracy {100 * m['accuracy']:.2f}% is more than "
                   f"{100 * cfg.max_accuracy_drop:.2f} pt below {first['name']}'s "
                   f"{100 * ref['accuracy']:.2f}%")
    if cfg.max_ece is not None and m.get("ece", 0.0) > cfg.max_ece:
        out.append(f"ECE {m['ece']:.4f} > {cfg.max_ece}")
    key = f"robust_accuracy/{cfg.robust_attack}"
    if cfg.min_robust_accuracy is not None and m.get(key, 1.0) < cfg.min_robust_accuracy:
        out.append(f"{cfg.robust_attack} accuracy {100 * m[key]:.2f}% < "
                   f"{100 * cfg.min_robust_accuracy:.2f}%")
    if cfg.min_robust_accuracy is not None and key not in m:
        out.append(f"no {cfg.robust_attack} accuracy measured (add 'robust' to evaluate)")
    if cfg.latency_budget_ms is not None and lat.get("median_ms", 0.0) > cfg.latency_budget_ms:
        out.append(f"{lat['median_ms']:.3f} ms > budget {cfg.latency_budget_ms} ms")
    size = ((stage.get("deployed") or {}).get(target) or {}).get("size_bytes",
                                                                 m.get("size_bytes"))
    if cfg.max_size_bytes is not None and (size or 0) > cfg.max_size_bytes:
        out.append(f"{size:.0f} B on disk > {cfg.max_size_bytes} B")
    return out


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion k/n (95% for z = 1.96)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def close_call(stage: dict[str, Any], first: dict[str, Any], target: str, cfg: DecideConfig,
               n: int) -> dict[str, Any] | None:
    """When the stage's accuracy drop lies within 2 standard errors of the budget on ``n`` test
    examples, the figures of that close call (None otherwise). The standard error treats the
    two accuracies as independent, which overstates it for two models scored on the same
    examples: a close call may be flagged that a paired test would resolve, never the other
    way round."""
    acc, ref = _accuracy(stage, target), first["metrics"].get("accuracy")
    if acc is None or ref is None or n < 1 or stage["name"] == first["name"]:
        return None
    drop = ref - acc
    se = math.sqrt((ref * (1 - ref) + acc * (1 - acc)) / n)
    if se == 0 or abs(drop - cfg.max_accuracy_drop) >= 2 * se:
        return None
    return {"stage": stage["name"], "drop": drop, "budget": cfg.max_accuracy_drop, "se": se,
            "drop_ci95": [drop - 1.96 * se, drop + 1.96 * se], "test_examples": n,
            "accepted": drop <= cfg.max_accuracy_drop + 1e-12}


def recommend(stages: list[dict[str, Any]], target: str, cfg: DecideConfig,
              n_test: int | None = None) -> dict[str, Any]:
    """The recommended stage on ``target``: among those meeting every constraint, the one with
    the largest paired speed-up over the first stage; ``rejected`` says which constraint each
    other stage misses, ``slower`` why a stage that meets them all was not chosen. ``stage`` is
    None when no stage qualifies. With ``n_test`` (the test examples the accuracies rest on),
    ``close_calls`` lists the stages whose acceptance or rejection on accuracy lies within 2
    standard errors of the budget, where they decided the answer."""
    first = stages[0]
    rejected = {s["name"]: v for s in stages if (v := violations(s, first, target, cfg))}
    fit = [s for s in stages if s["name"] not in rejected and _speed(s, target) is not None]
    out: dict[str, Any] = {"target": target, "stage": None, "rejected": rejected, "slower": {}}
    if not fit:
        return out
    top = max(_speed(s, target) for s in fit)
    # the earliest stage within SAME of the fastest: noise never decides between equals
    best = next(s for s in fit if _speed(s, target) * SAME >= top)
    lat = best["latency"][target]
    noisy = not claimed(lat, (first.get("latency") or {}).get(target), lat.get("vs_first"))
    for s in fit:
        if s is best:
            continue
        r = _speed(best, target) / _speed(s, target)
        if noisy or not claimed(s["latency"][target], None, s["latency"][target].get("vs_first")):
            why = f"ranked below {best['name']} on a noisy timing (no ratio claimed)"
        elif r < SAME:
            why = (f"the same speed as {best['name']} within {100 * (SAME - 1):.0f}% (paired "
                   f"{1 / r:.2f}x): the earlier stage is kept")
        else:
            why = f"{r:.2f}x slower than {best['name']} (paired)"
        out["slower"][s["name"]] = why
    how = (best.get("deployed") or {}).get(target) or lat.get("deployed", {})
    out.update(stage=best["name"], latency_ms=lat["median_ms"], p10_ms=lat["p10_ms"],
               p90_ms=lat["p90_ms"], speedup=_speed(best, target), deployed=how, noisy=noisy,
               accuracy=_accuracy(best, target),
               own_accuracy=target in (best.get("accuracy_by_target") or {}))
    if "vs_first" in lat:
        out["speedup_p10"], out["speedup_p90"] = lat["vs_first"]["p10"], lat["vs_first"]["p90"]
    if n_test and out["accuracy"] is not None:
        out["test_examples"] = n_test
        out["accuracy_ci95"] = list(wilson(out["accuracy"] * n_test, n_test))
        faster = [s for s in stages if s["name"] in rejected and _speed(s, target) is not None
                  and _speed(s, target) > _speed(best, target) * SAME
                  and all(v.startswith("accuracy ") for v in rejected[s["name"]])]
        calls = [close_call(s, first, target, cfg, n_test) for s in [best] + faster]
        out["close_calls"] = [c for c in calls if c is not None]
    return out
