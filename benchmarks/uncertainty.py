"""Issue 6 acceptance on Fashion-MNIST, from three recipe runs (each run once, then reused):

- recipes/calibrate.yaml: temperature scaling of an over-confident MLP (ECE cut >= 40%, accuracy
  unchanged);
- recipes/uncertainty.yaml: MC dropout vs the same model (lower NLL), a 5-member deep ensemble vs
  its best member (lower NLL and ECE), Laplace and Bayes by Backprop, and OOD detection by every
  score and method (best AUROC on digits >= 0.90);
- recipes/calibrate-int8.yaml: ECE before and after each stage of prune -> int8 -> re-calibration.

    python benchmarks/uncertainty.py [--runs runs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import finished_run

SCORES = ("msp", "entropy", "energy", "mutual_information")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs", help="folder holding the three runs")
    runs = Path(ap.parse_args().runs)
    failures: list[str] = []

    def check(ok: bool, text: str) -> None:
        print(("PASS " if ok else "FAIL ") + text)
        if not ok:
            failures.append(text)

    cal = {s.name: s.metrics for s in finished_run("recipes/calibrate.yaml",
                                                   runs / "calibrate").stages}
    cut = 1 - cal["calibrate"]["ece"] / cal["train"]["ece"]
    check(cut >= 0.40 and cal["calibrate"]["accuracy"] == cal["train"]["accuracy"],
          f"temperature scaling: test ECE {cal['train']['ece']:.4f} -> "
          f"{cal['calibrate']['ece']:.4f} (-{100 * cut:.0f}%), accuracy "
          f"{100 * cal['train']['accuracy']:.2f}% -> {100 * cal['calibrate']['accuracy']:.2f}%")

    unc = finished_run("recipes/uncertainty.yaml", runs / "uncertainty")
    st = {s.name: s for s in unc.stages}
    base, mc, ens = st["train"].metrics, st["mc_dropout"].metrics, st["ensemble"].metrics
    check(mc["nll"] < base["nll"], f"MC dropout: NLL {base['nll']:.4f} -> {mc['nll']:.4f}")
    check(ens["nll"] < ens["nll_best_member"] and ens["ece"] < ens["ece_best_member"],
          f"ensemble of 5: NLL {ens['nll']:.4f} vs best member {ens['nll_best_member']:.4f}, "
          f"ECE {ens['ece']:.4f} vs best member {ens['ece_best_member']:.4f}")
    print("\n| stage | accuracy | NLL | ECE | Brier | params | latency ms |")
    print("|---|---|---|---|---|---|---|")
    for s in unc.stages:
        m = s.metrics
        print(f"| {s.name} | {100 * m['accuracy']:.2f}% | {m['nll']:.4f} | {m['ece']:.4f} | "
              f"{m['brier']:.4f} | {m['params']:,} | "
              f"{m.get('latency_ms/server', float('nan')):.3f} |")
    best = (0.0, "", "")
    print("\n| stage | OOD set | " + " | ".join(SCORES) + " |")
    print("|---|---|" + "---|" * len(SCORES))
    for s in unc.stages:
        for name, rows in s.details.get("ood", {}).items():
            cells = [f"{rows[k]['auroc']:.4f}" if k in rows else "-" for k in SCORES]
            print(f"| {s.name} | {name} | " + " | ".join(cells) + " |")
            for k, r in rows.items():
                if name == "digits" and r["auroc"] > best[0]:
                    best = (r["auroc"], s.name, k)
    print()
    check(best[0] >= 0.90, f"OOD digits vs Fashion-MNIST: best AUROC {best[0]:.4f} "
          f"({best[1]}, {best[2]})")

    ci8 = finished_run("recipes/calibrate-int8.yaml", runs / "calibrate-int8")
    print("\n| stage | step | accuracy | NLL | ECE | MCE | Brier |")
    print("|---|---|---|---|---|---|---|")
    for s in ci8.stages:
        m = s.metrics
        print(f"| {s.name} | {s.step} | {100 * m['accuracy']:.2f}% | {m['nll']:.4f} | "
              f"{m['ece']:.4f} | {m['mce']:.4f} | {m['brier']:.4f} |")
    by = {s.name: s.metrics for s in ci8.stages}
    check(by["calibrate-2"]["ece"] < by["quantize"]["ece"],
          f"re-calibrated int8: ECE {by['quantize']['ece']:.4f} -> {by['calibrate-2']['ece']:.4f}")
    print("\nall acceptance checks passed" if not failures else f"\n{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
