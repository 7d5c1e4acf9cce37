# Two commands for a fresh clone: `make run` (the whole pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= -q
# Everything is installed at the version uv.lock pins: its export is pip's constraints file. torch is the CPU build
# of the locked version, from a local wheel where pip's find-links has one, else from PyTorch's CPU index (PyPI's
# Linux torch is the multi-GB CUDA build). docs/deploy.md, "Dependencies and the lock".
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
LOCKED := $(VENV)/lock-constraints.txt

.PHONY: run test lint typecheck lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# the uv release that uv.lock pins
$(BIN)/uv: uv.lock | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) "uv==$$(sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)"
	touch $@

# --locked: stops, saying to run `make lock`, when pyproject.toml has changed since uv.lock was made
$(LOCKED): pyproject.toml uv.lock $(BIN)/uv
	$(BIN)/uv export --locked --quiet --python $(BIN)/python --no-emit-project --all-extras --no-hashes \
		--no-header --output-file $@

$(VENV)/.torch: $(LOCKED)
	version="$$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' $(LOCKED))"; \
	$(BIN)/pip install $(PIP_FLAGS) --no-deps --no-index "torch==$$version+cpu" 2>/dev/null || \
	$(BIN)/pip install $(PIP_FLAGS) --no-deps --index-url $(TORCH_INDEX) "torch==$$version"
	touch $@

$(VENV)/.installed: $(VENV)/.torch
	$(BIN)/pip install $(PIP_FLAGS) --constraint $(LOCKED) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch
	$(BIN)/pip install $(PIP_FLAGS) --constraint $(LOCKED) -e '.[dev]'
	touch $@ $(VENV)/.installed

# after a change to the dependencies of pyproject.toml: resolve uv.lock again (commit it with the change)
lock: $(BIN)/uv
	$(BIN)/uv lock

run: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" mlflow run . --env-manager local --experiment-name seqrec $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

clean:
	rm -rf $(VENV) mlruns mlflow.db .pytest_cache
