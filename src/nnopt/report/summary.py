"""The answer a run gives: the recommended stage per target under the recipe's ``decide:``
constraints, conclusions written from the measurements (each citing its figures), and predicted
against measured where a prediction existed. Stored as results.json ``summary`` and drawn first
in the report."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

from nnopt.core.version import __version__
from nnopt.measure.decide import SAME, DecideConfig, claimed, recommend
from nnopt.measure.quantity import fmt
from nnopt.recipe import ResolvedRecipe
from nnopt.report.model import Report, StageRecord


def git_revision(folder: Path) -> str | None:
    """The git commit of ``folder``'s repository (with '+dirty' for local changes), if any."""
    try:
        rev = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(resolved: ResolvedRecipe) -> dict[str, Any]:
    """What a reader needs to reproduce the run: recipe file, seed, date, versions, revision."""
    here = Path(__file__).resolve().parent
    return {"recipe_file": resolved.source, "seed": resolved.recipe.seed,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nnopt_version": __version__, "git_revision": git_revision(here)}


def _pt(a: float, b: float) -> str:
    return f"{100 * (b - a):+.2f} pt"


def deployed_text(d: dict[str, Any]) -> str:
    """How a stage ships to a target, in words ('none' when it does not)."""
    if not d or "runtime" not in d:
        return "none"
    return f"{d['runtime']} {d.get('precision', 'fp32')}"


def stage_dicts(stages: list[StageRecord]) -> list[dict[str, Any]]:
    return [{"name": s.name, "metrics": s.metrics, "latency": s.details.get("latency") or {},
             "accuracy_by_target": s.details.get("deployed_accuracy") or {},
             "deployed": s.details.get("deployed") or {}} for s in stages]


def speed_text(r: dict[str, Any]) -> str:
    """A recommendation's speed-up over the first stage as the report and the terminal show
    it: a noisy one is not claimed."""
    if r.get("speedup") is None:
        return "-"
    if r.get("noisy"):
        return "not claimed (noisy)"
    text = f"{r['speedup']:.2f}x"
    if "speedup_p10" in r:
        text += f" ({r['speedup_p10']:.2f}-{r['speedup_p90']:.2f})"
    return text


def ship_text(d: dict[str, Any]) -> str:
    """The files a deployment ships, with their bytes on disk."""
    files = d.get("files") or ([d["file"]] if d.get("file") else [])
    if not files:
        return "-"
    size = f" ({fmt('size_bytes', d['size_bytes'])})" if d.get("size_bytes") else ""
    return " + ".join(files) + size


def not_chosen(r: dict[str, Any]) -> dict[str, str]:
    """Why each other stage was not recommended: a constraint it misses, or its speed."""
    out = {k: v[0] for k, v in (r.get("rejected") or {}).items()}
    out.update(r.get("slower") or {})
    return out


def _close_lines(recs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in recs:
        for c in r.get("close_calls") or []:
            lo, hi = c["drop_ci95"]
            verdict = "meets it" if c["accepted"] else "misses it"
            out.append(
                f"On {r['target']}, {c['stage']}'s accuracy drop of {100 * c['drop']:.2f} pt is "
                f"within 2 standard errors of the {100 * c['budget']:.2f} pt budget on "
                f"{c['test_examples']} test examples (95% interval of the drop "
                f"{100 * lo:+.2f} to {100 * hi:+.2f} pt): it {verdict} on the point estimate, "
                "but the test set is too small to tell; measure on more examples before "
                "relying on that.")
    return out


def _stage_lines(stages: list[StageRecord], targets: list[str]) -> list[str]:
    out = []
    by_name = {s.name: s for s in stages}
    for s in stages[1:]:
        parent = by_name.get(s.details.get("from", ""))
        if parent is None:
            continue
        m, p = s.metrics, parent.metrics
        parts = []
        if "accuracy" in m and "accuracy" in p:
            parts.append(f"accuracy {100 * p['accuracy']:.2f}% -> {100 * m['accuracy']:.2f}% "
                         f"({_pt(p['accuracy'], m['accuracy'])})")
        if "ece" in m and "ece" in p:
            parts.append(f"ECE {p['ece']:.4f} -> {m['ece']:.4f}")
        if m.get("size_bytes") and p.get("size_bytes") and \
                abs(m["size_bytes"] / p["size_bytes"] - 1) > SAME - 1:
            parts.append(f"file {p['size_bytes'] / m['size_bytes']:.2f}x smaller"
                         if m["size_bytes"] < p["size_bytes"] else
                         f"file {m['size_bytes'] / p['size_bytes']:.2f}x larger")
        for t in targets:
            lat = (s.details.get("latency") or {}).get(t) or {}
            vs = lat.get("vs_parent")
            if not vs:
                continue
            how = f"as {deployed_text(lat.get('deployed', {}))}"
            spread = f"paired p10-p90 {vs['p10']:.2f}-{vs['p90']:.2f}x"
            if not claimed(lat, (parent.details.get("latency") or {}).get(t), vs):
                why = vs.get("noisy_why") or lat.get("noisy_why") or "a noisy figure"
                parts.append(f"on {t} no speed-up is claimed (noisy: {why})")
            elif 1 / SAME < vs["ratio"] < SAME:
                parts.append(f"on {t} the same speed within {100 * (SAME - 1):.0f}% "
                             f"({vs['ratio']:.2f}x, {spread}, {how})")
            else:
                word = "faster" if vs["ratio"] >= 1 else "slower"
                ratio = vs["ratio"] if vs["ratio"] >= 1 else 1 / vs["ratio"]
                parts.append(f"on {t} {ratio:.2f}x {word} (speed {vs['ratio']:.2f}x, {spread}, "
                             f"{how})")
        if parts:
            label = s.name if s.name == s.step else f"{s.name} ({s.step})"
            out.append(f"{label} against {parent.name}: " + "; ".join(parts) + ".")
    return out


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
                 "executorch": "ExecuTorch", "torch": "PyTorch"}


def _quantization_lines(stages: list[StageRecord]) -> list[str]:
    """Per deploying stage and target: the deployment chosen and among how many (its speed is
    the timing pass's, said once with the stage), then the runtime and precision effects."""
    out = []
    for s in stages:
        q = s.details.get("quantization") or {}
        chosen = q.get("chosen") if isinstance(q.get("chosen"), dict) else {}
        for t, name in chosen.items():
            row = next((r for r in (q.get("candidates") or {}).get(t, [])
                        if r["deployment"] == name), None)
            if row and row["deployment"] not in ("torch-fp32",):
                cands = q["candidates"][t]
                can = sum(1 for r in cands if r.get("runs_here", True))
                among = f"{can} of {len(cands)}" if can < len(cands) else str(len(cands))
                runtime = RUNTIME_NAMES.get(row["runtime"], row["runtime"])
                out.append(f"{s.name}: {t} gets {name} ({runtime} {row['precision']}), chosen "
                           f"among the {among} options timed there that it can run"
                           + ("; the timing it was chosen on was noisy, so another option may "
                              "be as fast" if row["noisy"] else "") + ".")
        by_target: dict[str, list[dict[str, Any]]] = {}
        for r in s.details.get("deployment") or []:
            by_target.setdefault(r["target"], []).append(r)
        for t, rows in by_target.items():
            out.append(_effects_line(s.name, t, rows))
    return out


def _effects_line(stage: str, target: str, rows: list[dict[str, Any]]) -> str:
    """One conclusion per stage and target: each runtime's fp32 against PyTorch fp32 (the
    runtime effect), then each runtime's int8 against its own fp32 (the precision effect)."""
    if any(r.get("noisy") for r in rows):
        return (f"{stage}: on {target}, the runtime and precision effects (timed while choosing "
                "the deployment, apart from the timing pass) were noisy and are not claimed.")
    rows = [{**r, "runtime": r.get("runtime", "onnxruntime")} for r in rows]  # older runs
    name = {r["runtime"]: RUNTIME_NAMES.get(r["runtime"], r["runtime"]) for r in rows}
    rt = [f"{name[r['runtime']]} {r['runtime_effect']:.2f}x" for r in rows
          if r["runtime"] != "torch"]
    pr = [f"{name[r['runtime']]} {r['precision_effect']:.2f}x" for r in rows]
    faster = [name[r["runtime"]] for r in rows if r["int8_faster"]]
    text = f"{stage}: on {target}, "
    if rt:
        text += f"fp32 against PyTorch fp32 eager (the runtime effect): {', '.join(rt)}; "
    text += f"int8 against the same runtime's fp32 (the precision effect): {', '.join(pr)}. "
    if faster:
        return text + f"int8 pays on {', '.join(faster)}."
    return text + "int8 is not faster on any runtime here: every gain is the runtime's, not int8's."


def predictions(stages: list[StageRecord], targets: list[str]) -> list[dict[str, Any]]:
    """Predicted against measured: MAC ratios, the latency table, the pruning pre-flight."""
    rows = []
    by_name = {s.name: s for s in stages}
    for s in stages:
        parent = by_name.get(s.details.get("from", ""))
        lat = s.details.get("latency") or {}
        for t in targets:
            vs = (lat.get(t) or {}).get("vs_parent")
            if parent is not None and vs and "macs" in s.metrics and \
                    parent.metrics.get("macs") and s.metrics["macs"]:
                rows.append({"stage": s.name, "target": t, "prediction": "MAC ratio",
                             "predicted": parent.metrics["macs"] / s.metrics["macs"],
                             "measured": vs["ratio"], "unit": "x", "noisy": vs["noisy"]})
            pred = s.metrics.get(f"predicted_latency_ms/{t}")
            if pred is not None and "median_ms" in (lat.get(t) or {}):
                rows.append({"stage": s.name, "target": t, "prediction": "latency table",
                             "predicted": pred, "measured": lat[t]["median_ms"], "unit": "ms",
                             "noisy": bool(lat[t].get("noisy"))})
        for pf in s.details.get("preflight") or []:
            vs = (lat.get(pf.get("target")) or {}).get("vs_parent")
            if vs and pf.get("speedup"):
                rows.append({"stage": s.name, "target": pf["target"],
                             "prediction": "sparsity pre-flight", "predicted": pf["speedup"],
                             "measured": vs["ratio"], "unit": "x", "noisy": vs["noisy"]})
    return rows


def _trust_lines(stages: list[StageRecord]) -> list[str]:
    out, flags = [], {}
    for s in stages:
        for name, flag in (s.details.get("ood_flags") or {}).items():
            flags.setdefault(name, (flag, []))[1].append(s.name)
    for name, (flag, where) in flags.items():
        out.append(f"OOD set '{name}' {flag} (stages: {', '.join(where)}).")
    for s in stages:
        rob = s.details.get("robustness") or {}
        if rob.get("gradients", "").startswith("BPDA"):
            out.append(f"{s.name}: white-box attacks took their gradients by "
                       f"{rob['gradients']}.")
    return out


def summarize(report: Report) -> dict[str, Any]:
    """The summary of one run (results.json ``summary``)."""
    stages = report.stages
    targets = [t["name"] for t in report.recipe.get("targets", [])]
    cfg = DecideConfig(**(report.recipe.get("decide") or {}))
    n_test = report.data.get("test")
    recs = [recommend(stage_dicts(stages), t, cfg, n_test if isinstance(n_test, int) else None)
            for t in targets]
    busy: dict[str, float] = {}  # target -> the largest share of the CPUs others used
    for s in stages:
        for t, fig in (s.details.get("latency") or {}).items():
            ld = fig.get("load", {}) if isinstance(fig, dict) else {}
            if ld.get("busy"):
                busy[t] = max(busy.get(t, 0.0), ld["other_cpu"])
    lines = []
    if busy:
        lines.append("The machine was busy while timing on " + ", ".join(
            f"{t} (other processes used up to {100 * v:.0f}% of the CPUs)"
            for t, v in busy.items()) + ": those latencies are flagged noisy and no speed-up "
            "is claimed from them; time again on a quiet machine before acting on them.")
    for r in recs:
        if r["stage"] is None:
            lines.append(f"No stage meets the constraints on {r['target']}: " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in r["rejected"].items()) + ".")
    lines += _close_lines(recs)
    lines += _stage_lines(stages, targets) + _quantization_lines(stages) + _trust_lines(stages)
    return {"decide": cfg.model_dump(mode="json"), "recommendations": recs,
            "conclusions": lines, "predictions": predictions(stages, targets),
            "machine_busy": bool(busy)}
