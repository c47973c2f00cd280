# The two commands of the README: `make demo` and `make test`. Both set up everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.nnopt-installed
OUT    ?= runs/quickstart
FMNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test setup data benchmarks clean

demo: setup data
	$(BIN)/nnopt run recipes/quickstart.yaml --out $(OUT)

test: setup data
	$(BIN)/python -m pytest

setup: $(STAMP)

# torch is pinned to the CPU build this project is measured with; it is installed first so that
# nothing else pulls a different (CUDA) build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

benchmarks: setup data
	$(BIN)/python benchmarks/fit_overhead.py
	$(BIN)/python benchmarks/latency_stability.py

clean:
	rm -rf runs .pytest_cache
