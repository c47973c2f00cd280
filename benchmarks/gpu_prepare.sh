#!/usr/bin/env bash
# Prepares, on this machine, what benchmarks/gpu_check.sh needs on a lent GPU machine, whose
# image has PyTorch (CUDA), onnx, onnxruntime, safetensors, matplotlib and scikit-learn but not
# pydantic or Torch-Pruning, and cannot download: their wheels (for its Python 3.12) into .whl/,
# and Fashion-MNIST (Debian's dataset-fashion-mnist) into .data/. Both folders are ignored by git;
# the device tool carries them (README, "Training on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl .data/fashion-mnist
cp /usr/share/datasets/fashion-mnist/* .data/fashion-mnist/
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    pydantic==2.14.4 "$(.venv/bin/pip list 2>/dev/null | awk '$1=="pydantic_core"{print "pydantic-core=="$2}')" \
    annotated-types typing-inspection typing-extensions==4.16.0 torch-pruning==1.6.1
ls .whl
