# Everything a fresh clone needs, from python3 alone: `make test`, `make demo`, `make docs`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Small MLPs on few cores run far slower with several intra-op threads under load (measured on a shared 2-core machine).
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install test nbtest pytest demo docs check export clean bench lint

$(VENV)/.installed: settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: nbtest pytest

nbtest: install
	$(BIN)/nbdev_test --n_workers 2

pytest: install
	$(PY) -m pytest -q tests

demo: install
	$(BIN)/gfn-demo

docs: install
	$(PY) tools/build_docs.py

bench: install
	$(PY) benchmarks/sampling.py

export: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(PY) tools/colab.py
	$(PY) tools/build_docs.py --sidebar
	$(PY) tools/build_docs.py --readme

# Undefined names, unused imports and star imports in the exported library (pyflakes' rules, ruff.toml).
lint: install
	$(BIN)/ruff check gfn_nbdev

# The notebooks, the exported library and the cleaned notebooks must agree (as nbdev's CI checks); the library lints.
check: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(PY) tools/colab.py
	$(BIN)/ruff check gfn_nbdev
	$(PY) tools/build_docs.py --sidebar
	$(PY) tools/build_docs.py --readme
	git status --porcelain -- gfn_nbdev nbs README.md
	test -z "$$(git status --porcelain -- gfn_nbdev nbs README.md)"

clean:
	rm -rf _docs _proc .pytest_cache
