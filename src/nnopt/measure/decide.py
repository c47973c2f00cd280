"""The recipe's question, answered per target: which stage to ship, under the recipe's
``decide:`` constraints (default: the fastest stage within 1 point of the first stage's
accuracy). Stages are ranked by their paired speed-up over the first stage on that target (the
same rounds), so a ranking never mixes machine states."""

from __future__ import annotations

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


def _speed(stage: dict[str, Any], target: str) -> float | None:
    """The stage's paired speed-up over the first stage on ``target`` (1 for the first)."""
    rec = (stage.get("latency") or {}).get(target) or {}
    if "median_ms" not in rec:
        return None
    return rec["vs_first"]["ratio"] if "vs_first" in rec else 1.0


def violations(stage: dict[str, Any], first: dict[str, Any], target: str,
               cfg: DecideConfig) -> list[str]:
    """What keeps ``stage`` from being recommended on ``target`` ([] when nothing does)."""
    m, ref = dict(stage["metrics"]), first["metrics"]
    own = (stage.get("accuracy_by_target") or {}).get(target)
    if own is not None:  # the target runs another artifact than the stage's primary one
        m["accuracy"] = own
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
    if cfg.max_size_bytes is not None and m.get("size_bytes", 0) > cfg.max_size_bytes:
        out.append(f"{m['size_bytes']:.0f} B > {cfg.max_size_bytes} B")
    return out


def recommend(stages: list[dict[str, Any]], target: str, cfg: DecideConfig) -> dict[str, Any]:
    """The recommended stage on ``target``: among those meeting every constraint, the one with
    the largest paired speed-up over the first stage; ``rejected`` says why the others were
    not chosen. ``stage`` is None when no stage qualifies."""
    first = stages[0]
    rejected = {s["name"]: v for s in stages if (v := violations(s, first, target, cfg))}
    fit = [s for s in stages if s["name"] not in rejected and _speed(s, target) is not None]
    out: dict[str, Any] = {"target": target, "stage": None, "rejected": rejected}
    if not fit:
        return out
    top = max(_speed(s, target) for s in fit)
    # the earliest stage within SAME of the fastest: noise never decides between equals
    best = next(s for s in fit if _speed(s, target) * SAME >= top)
    lat = best["latency"][target]
    out.update(stage=best["name"], latency_ms=lat["median_ms"], p10_ms=lat["p10_ms"],
               p90_ms=lat["p90_ms"], speedup=_speed(best, target),
               deployed=lat.get("deployed", {}), noisy=bool(lat.get("noisy")),
               accuracy=(best.get("accuracy_by_target") or {}).get(
                   target, best["metrics"].get("accuracy")),
               own_accuracy=target in (best.get("accuracy_by_target") or {}))
    if "vs_first" in lat:
        out["speedup_p10"], out["speedup_p90"] = lat["vs_first"]["p10"], lat["vs_first"]["p90"]
        out["noisy"] = out["noisy"] or lat["vs_first"]["noisy"]
    return out
