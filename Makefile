# The two commands of the README: `make demo` (the main job) and `make test` (the suite);
# `make docs` builds the documentation site into docs/_build/html.
# Each creates .venv and installs what it needs; torch is pinned to the CPU build that this
# project's machines keep on local disk (a plain `torch` would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench browser pythae-env sdv-env clean docs docs-full docs-quick

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,plot]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/aekit demo

test: $(BIN)/.installed browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The report's browser test uses Debian's headless Chromium; install it where we can
# (root with apt-get), otherwise that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# The documentation site (Sphinx): the tutorials run with their real epochs (a few minutes
# on 2 cores); docs-quick runs them with few epochs and rows, as the test suite does.
# Warnings, broken references and tutorials that raise fail the build.
SPHINX := $(BIN)/python -m sphinx -b html -W --keep-going -q -d docs/_build/doctrees

# MathJax for the formulas, fetched once from the npm registry so the site reads offline
# (without npm the pages load it from MathJax's CDN)
MATHJAX := docs/_build/mathjax/node_modules/mathjax/es5/tex-chtml.js

$(MATHJAX):
	-npm install --prefix docs/_build/mathjax --no-save --silent mathjax@3 \
	  || echo "npm unavailable: the pages will load MathJax from its CDN"

docs: $(BIN)/.installed $(MATHJAX)
	$(SPHINX) docs docs/_build/html
	@echo "open docs/_build/html/index.html"

docs-full: docs

docs-quick: $(BIN)/.installed $(MATHJAX)
	AEKIT_DOCS_QUICK=1 $(SPHINX) docs docs/_build/html
	@echo "open docs/_build/html/index.html (quick build: few epochs)"

# SDV in its own environment, for benchmarks/synthetic.py (it pins its own dependencies).
sdv-env:
	$(PYTHON) -m venv .venv-sdv
	.venv-sdv/bin/python -m pip install -q "$(TORCH)" sdv

# pythae in its own environment, for benchmarks/speed.py (not an aekit dependency).
pythae-env:
	$(PYTHON) -m venv .venv-pythae
	.venv-pythae/bin/python -m pip install -q "$(TORCH)" pythae

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/core_speed.py

clean:
	rm -rf $(VENV) aekit-demo .pytest_cache docs/_build docs/auto_tutorials docs/api/generated \
	  docs/sg_execution_times.rst
