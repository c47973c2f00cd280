"""Issue 25's acceptance: the quickstart run quiet, then again with a CPU burner on every core for
the whole run; the per-target choices must be equal, every ratio the loaded report headlines
within 20% of the quiet run's or flagged noisy; the deployed stage must have a latency on every
target, >= 5x over PyTorch fp32 there (side by side) at >= the first stage's accuracy - 0.5 pt.
A screenshot of the quiet report's first screen (1280x800) is kept.

    python benchmarks/answer.py [--recipe recipes/quickstart.yaml] [--out runs/answer]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nnopt.core.environment import cpu_flags

BURN = "while True: pass"
TOLERANCE = 0.20  # a headlined ratio under load within 20% of the quiet one, or flagged


def run(recipe: str, out: Path, burners: int) -> tuple[dict, float]:
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
    start = time.perf_counter()
    try:
        subprocess.run([str(Path(sys.executable).parent / "nnopt"), "run", recipe, "--out",
                        str(out), "--quiet"], check=True)
    finally:
        for p in procs:
            p.kill()
    return json.loads((out / "results.json").read_text()), time.perf_counter() - start


def choices(res: dict) -> dict[str, str]:
    """Per target: what each deploying stage chose, and the recommended stage."""
    out = {}
    for s in res["stages"]:
        for t, c in ((s["details"].get("quantization") or {}).get("chosen") or {}).items():
            out[f"{s['name']} deploys on {t}"] = str(c)
    for r in res["summary"]["recommendations"]:
        out[f"recommended on {r['target']}"] = str(r["stage"])
    return out


def headlined(res: dict) -> dict[str, dict]:
    """Every ratio the report states as a figure: paired speed-ups per stage and target
    (against the first stage and the parent stage), and the runtime / precision effects."""
    out = {}
    for s in res["stages"]:
        for t, lat in (s["details"].get("latency") or {}).items():
            for key in ("vs_first", "vs_parent"):
                if key in lat:
                    out[f"{s['name']} {key} on {t}"] = lat[key]
        for row in s["details"].get("deployment") or []:
            for key in ("runtime_effect", "precision_effect"):
                out[f"{s['name']} {key} on {row['target']}"] = {"ratio": row[key],
                                                                 "noisy": row["noisy"]}
    return out


def deployed_checks(res: dict) -> list[tuple[str, bool, str]]:
    """The deployed stage: latency on every target, >= 5x over PyTorch fp32 (paired, within
    the stage's own timing of the options), accuracy >= first stage's - 0.5 pt."""
    first = res["stages"][0]["metrics"]["accuracy"]
    out = []
    for s in res["stages"]:
        q = s["details"].get("quantization")
        if not q:
            continue
        for t, chosen in q["chosen"].items():
            has = f"latency_ms/{t}" in s["metrics"]
            out.append((f"{s['name']} has a latency on {t}", has,
                        f"{s['metrics'].get(f'latency_ms/{t}', 'none')} ms"))
            row = next((r for r in q["candidates"][t] if r["deployment"] == chosen), None)
            if row:
                out.append((f"{s['name']} on {t}: {chosen} >= 5x over torch-fp32 eager", row[
                    "speedup"] >= 5.0, f"{row['speedup']:.2f}x (p10-p90 {row['speedup_p10']:.2f}"
                    f"-{row['speedup_p90']:.2f}){' noisy' if row['noisy'] else ''}"))
            acc = (s["details"].get("deployed_accuracy") or {}).get(t, s["metrics"]["accuracy"])
            out.append((f"{s['name']} on {t}: accuracy >= first - 0.5 pt", acc >= first - 0.005,
                        f"{100 * acc:.2f}% vs {100 * first:.2f}%"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/quickstart.yaml")
    ap.add_argument("--out", default="runs/answer", type=Path)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    print(f"CPU flags: {' '.join(cpu_flags())}; cores {os.cpu_count()}; "
          f"load {os.getloadavg()[0]:.2f}")
    quiet, tq = run(args.recipe, args.out / "quiet", 0)
    print(f"quiet run: {tq:.0f} s")
    loaded, tl = run(args.recipe, args.out / "loaded", args.burners)
    print(f"loaded run ({args.burners} burners): {tl:.0f} s")
    ok = True
    lines = ["| what | quiet | loaded | verdict |", "|---|---|---|---|"]
    cq, cl = choices(quiet), choices(loaded)
    for k in cq:
        same = cq[k] == cl.get(k)
        ok &= same
        lines.append(f"| {k} | {cq[k]} | {cl.get(k)} | {'same' if same else 'DIFFERENT'} |")
        print(f"{'PASS' if same else 'FAIL'} choice {k}: quiet {cq[k]}, loaded {cl.get(k)}")
    hq, hl = headlined(quiet), headlined(loaded)
    for k, q in hq.items():
        lo = hl.get(k)
        if lo is None:
            continue
        close = abs(lo["ratio"] / q["ratio"] - 1) <= TOLERANCE
        good = close or lo["noisy"]
        ok &= good
        verdict = "within 20%" if close else ("flagged noisy" if lo["noisy"] else "NOT FLAGGED")
        lines.append(f"| {k} | {q['ratio']:.2f}x{' (noisy)' if q['noisy'] else ''} | "
                     f"{lo['ratio']:.2f}x{' (noisy)' if lo['noisy'] else ''} | {verdict} |")
        print(f"{'PASS' if good else 'FAIL'} ratio {k}: quiet {q['ratio']:.2f}x, loaded "
              f"{lo['ratio']:.2f}x ({verdict})")
    for name, good, fig in deployed_checks(quiet):
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} quiet: {name}: {fig}")
    loads = {t: lat.get("load") for s in loaded["stages"]
             for t, lat in s["details"]["latency"].items() if lat.get("load")}
    print("load while timing the loaded run: " + json.dumps(loads))
    (args.out / "answer.md").write_text("\n".join(lines) + "\n")
    chromium = shutil.which("chromium")
    if chromium:
        shot = args.out / "first-screen.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=1280,800", f"--screenshot={shot}",
                        (args.out / "quiet/report.html").resolve().as_uri()],
                       capture_output=True, timeout=120)
        print(f"screenshot of the first screen: {shot}")
    print("table: " + str(args.out / "answer.md"))
    print("ALL PASS" if ok else "SOME FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
