# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := fixtures/resnet

.PHONY: demo test lint fixtures bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the project's metadata changes, not on every run.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,torch]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/onnxcomp inspect $(DEMO).onnx
	$(BIN)/onnxcomp check $(DEMO).onnx $(DEMO).onnx --data $(DEMO).test.npz --latency --runs 30
	$(BIN)/onnxcomp check fixtures/lenet5.onnx fixtures/lenet5_opset11.onnx --data fixtures/lenet5.test.npz

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# Rebuild the trained fixtures (torch comes with the dev install, pinned to the CPU wheel).
fixtures: $(VENV)/.installed-dev
	$(BIN)/python fixtures/build.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
