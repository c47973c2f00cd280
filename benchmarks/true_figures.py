"""Issue 35's acceptance: the figures a report headlines are true.

1. Every size the quickstart report states equals the bytes on disk of the files it names, for
   every stage and target (an OpenVINO IR is model.xml + model.bin, not model.xml alone).
2. `nnopt report QUIET BUSY` (the same recipe run quiet, then with a CPU burner on every core)
   calls no ratio between the runs paired and flags the pair; `--time` re-times both runs'
   artifacts side by side in one pass here, and its ratios are paired.

    python benchmarks/true_figures.py [--recipe recipes/quickstart.yaml] [--out runs/true-figures]
        [--set KEY=VALUE ...] [--quiet-run DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from nnopt.core.environment import cpu_flags

BURN = "while True: pass"
NNOPT = str(Path(sys.executable).parent / "nnopt")


def run(recipe: str, out: Path, burners: int, sets: list[str]) -> float:
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
    start = time.perf_counter()
    try:
        subprocess.run([NNOPT, "run", recipe, "--out", str(out), "--quiet",
                        *[a for s in sets for a in ("--set", s)]], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        for p in procs:
            p.kill()
    return time.perf_counter() - start


def size_rows(out: Path) -> tuple[list[str], bool]:
    """Per stage and target: the files it ships, the size the report states, the bytes on disk
    (and, for the record, the one file an older nnopt counted)."""
    res = json.loads((out / "results.json").read_text())
    rows, ok = ["| stage | target | deployed as | files | stated | on disk | main file alone |",
                "|---|---|---|---|---:|---:|---:|"], True
    for s in res["stages"]:
        for t, d in s["details"]["deployed"].items():
            if "files" not in d:
                continue
            disk = sum((out / f).stat().st_size for f in d["files"])
            good = d["size_bytes"] == disk
            ok &= good
            rows.append(f"| {s['name']} | {t} | {d['runtime']} {d['precision']} | "
                        f"{', '.join(Path(f).name for f in d['files'])} | {d['size_bytes']:,} | "
                        f"{disk:,} | {(out / d['file']).stat().st_size:,} |")
            print(f"{'PASS' if good else 'FAIL'} size {s['name']} on {t}: stated "
                  f"{d['size_bytes']:,} B, on disk {disk:,} B ({len(d['files'])} files)")
        primary = s["details"]["deployed"]
        stated = s["metrics"].get("size_bytes")
        main = next((d for d in primary.values() if d.get("size_bytes") == stated), None)
        good = main is not None
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} {s['name']}'s size_bytes {stated:,} B is one "
              "target's files on disk")
    return rows, ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/quickstart.yaml")
    ap.add_argument("--out", default="runs/true-figures", type=Path)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--quiet-run", type=Path, help="an earlier quiet run of the recipe to reuse")
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    print(f"CPU flags: {' '.join(cpu_flags())}; cores {os.cpu_count()}; "
          f"load {os.getloadavg()[0]:.2f}")
    quiet = args.quiet_run or args.out / "quiet"
    if args.quiet_run is None:
        print(f"quiet run: {run(args.recipe, quiet, 0, args.set):.0f} s")
    busy = args.out / "busy"
    print(f"busy run ({args.burners} burners): {run(args.recipe, busy, args.burners, args.set):.0f} s")
    rows, ok = size_rows(quiet)
    (args.out / "sizes.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))

    cmp, timed = args.out / "cmp", args.out / "cmp-timed"
    subprocess.run([NNOPT, "report", str(quiet), str(busy), "--out", str(cmp)], check=True,
                   stdout=subprocess.DEVNULL)
    md = (cmp / "report.md").read_text()
    between = [ln for ln in md.splitlines() if ln.startswith(f"| {busy}/")
               and "separate runs, not paired" in ln]
    flagged = [ln for ln in between if "flagged:" in ln]
    good = bool(between) and flagged == between and "busy noisy" in " ".join(flagged)
    ok &= good
    print(f"{'PASS' if good else 'FAIL'} nnopt report: {len(between)} rows of latency ratios "
          f"between the runs, all 'separate runs, not paired', {len(flagged)} flagged")
    for ln in flagged:
        print("   " + ln)
    start = time.perf_counter()
    subprocess.run([NNOPT, "report", str(quiet), str(busy), "--out", str(timed), "--time"],
                   check=True, stdout=subprocess.DEVNULL)
    retimed = json.loads((timed / "comparison.json").read_text())["retimed"]
    tmd = (timed / "report.md").read_text()
    good = "## Latency re-timed side by side" in tmd and "separate runs" not in tmd
    ok &= good
    print(f"{'PASS' if good else 'FAIL'} nnopt report --time: every stage of both runs re-timed "
          f"side by side in {time.perf_counter() - start:.0f} s; its ratios are paired")
    for label, per_target in retimed.items():
        for t, r in per_target.items():
            if "median_ms" not in r:
                continue
            vs = r.get("vs_first")
            ratio = f"{vs['ratio']:.2f}x ({vs['p10']:.2f}-{vs['p90']:.2f})" if vs else "-"
            print(f"   {Path(label).parent.name}/{Path(label).name} on {t}: "
                  f"{r['median_ms']:.3f} ms ({r['p10_ms']:.3f}-{r['p90_ms']:.3f}), vs first "
                  f"{ratio}{' noisy' if r.get('noisy') else ''}")
    print("ALL PASS" if ok else "SOME FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
