# Two commands on a fresh machine:
#   make demo   set up (venv, packages, offline models) and run the pipeline on samples/ -> results/
#   make test   set up and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast setup bench constraints clean

REQUIREMENTS := pyproject.toml constraints.txt requirements.txt requirements-cloud.txt requirements-train.txt \
                requirements-dev.txt requirements-nodeps.txt

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[cloud,train,dev]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt -r requirements-nodeps.txt
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

# After a change to a requirement file: install it (make setup), then pin what is installed.
constraints: setup
	{ echo "# Exact versions of every package the set-up installs (make setup, CI, the Docker images: pip -c)."; \
	  echo "# Regenerate after changing a requirement file: make constraints (then review the diff)."; \
	  $(PY) -m pip freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu/torch==\1/' | sort -f; } > constraints.txt

clean:
	rm -rf $(VENV) .models results
