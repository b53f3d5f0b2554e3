# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv and installs what it needs; torch is pinned to the CPU build that this
# project's machines keep on local disk (a plain `torch` would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,plot]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/aekit demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/core_speed.py

clean:
	rm -rf $(VENV) aekit-demo .pytest_cache
