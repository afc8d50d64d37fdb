# Two commands on a fresh machine:
#   make demo   set up (venv, packages, offline models) and run the pipeline on samples/ -> results/
#   make test   set up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast setup bench clean

$(STAMP): requirements.txt requirements-nodeps.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m workers setup

demo: setup
	$(PY) -m workers run samples results --report
	@echo "results are in ./results (one JSON and one HTML page per audio file; open results/index.html)"

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .models results
