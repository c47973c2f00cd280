#!/usr/bin/env bash
# The GPU checks of issue 27 for a lent GPU machine: the device tool runs this in the repository
# root, with .whl and .data carried (prepare them here with benchmarks/gpu_prepare.sh). Two
# calls fit a 15-minute lease with a machine start each side of them:
#
#     bash benchmarks/gpu_check.sh first          speed, same, ssl-speed, smoke (about 7 min)
#     bash benchmarks/gpu_check.sh ssl [EPOCHS]   the SSL acceptance rerun (about 5 min at 100)
#
# Each part runs under its own time limit, so that one slow part cannot take the others' time;
# results land in $OUT (the device tool brings them back), else in runs/gpu.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 NNOPT_DATA="$PWD/.data"
out="${OUT:-runs/gpu}"
epochs="${2:-100}"
mkdir -p "$out"
run() {  # seconds, part
    timeout "$1" python3 benchmarks/gpu_training.py "$2" --out "$out/$2" --ssl-epochs "$epochs" \
        2>&1 | grep -v "^DEBUG" | tee "$out/$2.log"
}
case "${1:-first}" in
first)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
    run 100 speed; run 100 same; run 60 ssl-speed; run 160 smoke ;;
ssl)
    run 330 ssl ;;
*)
    echo "usage: gpu_check.sh first | ssl [EPOCHS]" >&2; exit 2 ;;
esac
