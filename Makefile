# `make demo`: set up .venv (first time only) and train the quickstart config on synthetic data.
# `make test`: set up .venv (first time only), lint, and run the test suite.
PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= workdirs/quickstart
PY := $(VENV)/bin/python

.PHONY: install demo test lint clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m unet_jax.main --config configs/quickstart.py --workdir $(WORKDIR)

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadgroup --durations=10 tests

clean:
	rm -rf $(VENV) workdirs
