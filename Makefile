# `make demo`: set up .venv (first time only) with the package alone and train the quickstart config
#   on synthetic data.
# `make test`: add the test, benchmark and experiment extras (first time only), lint, and run the
#   test suite.
# Each install step leaves a stamp in .venv, so `make test` after `make demo` installs only what
# the tests add.
PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= workdirs/quickstart
PY := $(VENV)/bin/python

.PHONY: install demo test lint experiments clean

$(VENV)/.base: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.experiments: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[experiments]'
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install --quiet -e '.[test,bench,experiments]'
	touch $@

install: $(VENV)/.base

experiments: $(VENV)/.experiments

demo: $(VENV)/.base
	$(PY) -m unet_jax.main --config configs/quickstart.py --workdir $(WORKDIR)

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder --durations=10 tests

clean:
	rm -rf $(VENV) workdirs
