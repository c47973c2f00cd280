"""Issue 23: a YAML alias bomb given to `nnopt validate` in a fresh process: wall time, peak
memory (the child's max RSS) and the exit code. The 7-level bomb is 378 bytes and stands for
10^7 values once its aliases are expanded.
The peak memory is the child's max RSS (this script loads nothing heavy itself).

    python benchmarks/hostile_yaml.py [--levels 7]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# _common.Checks is not imported: it loads torch, and a forked child's peak memory counts the
# parent's pages until it execs


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, ok: bool, text: str) -> None:
        print(("PASS " if ok else "FAIL ") + text)
        if not ok:
            self.failures.append(text)


def bomb(levels: int) -> str:
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * 10)}]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip(names, names[1:])]
    return "\n".join(lines) + f"\ndata: {{name: synthetic}}\nmodel: {{name: cnn}}\nx: *{names[-1]}\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, default=7)
    args = ap.parse_args()
    check = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bomb.yaml"
        path.write_text(bomb(args.levels))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nnopt", "validate", str(path)],
                              capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{args.levels}-level bomb, {len(bomb(args.levels))} bytes: exit {proc.returncode}, "
          f"{seconds:.2f} s, peak {peak_mb:.0f} MB; stderr: {proc.stderr.strip()}")
    check(proc.returncode == 2 and proc.stderr.count("\n") == 1, "refused in one line, exit 2")
    check(seconds < 5, f"refused within 5 s ({seconds:.2f} s)")
    check(peak_mb < 300, f"peak memory under 300 MB ({peak_mb:.0f} MB)")
    return 1 if check.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
