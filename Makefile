# Set-up installs into .venv/ at the repository root. The CPU build of torch is pinned here so that a machine
# without a GPU does not download a multi-GB CUDA build; on a GPU machine install the CUDA torch you need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/mixingbuddy demo --out demo_out

test: setup
	$(BIN)/python -m pytest -q
