# Two entry points for a fresh machine: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: the CPU wheel of this version installs offline; a bare `torch` would pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test bench clean

$(BIN)/slimlab: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(BIN)/slimlab

venv: $(BIN)/slimlab

demo: venv
	$(BIN)/slimlab demo --out runs/demo

test: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

clean:
	rm -rf runs .pytest_cache
