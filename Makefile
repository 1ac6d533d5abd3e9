# Two commands set everything up on a fresh machine (Python >= 3.11):
#   make demo   the main job: fit every model, run every check, write report/
#   make test   the whole test suite, in parallel (pytest -n auto)
# Each creates .venv and installs what it needs the first time (and again
# whenever pyproject.toml changes). `make bench` runs the peer benchmarks.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

demo: $(VENV)/.core
	$(PY) -m harness

test: $(VENV)/.test
	$(PY) -m pytest -n auto

bench: $(VENV)/.bench
	$(PY) -m harness bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.bench: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) report .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
