# Liaison: `make run` starts the whole stack, `make test` runs the suite. Both install what they
# need into .venv on first use (and again whenever pyproject.toml changes).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench demo clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Liaison needs Python 3.11 or newer on the PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m scripts.run

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m bench

# The product's story over HTTP (scripts/demo.py): against the running stack if one answers, else
# on a `make run` it starts and stops. DEMO_ARGS="--contacts 2000" for a shorter run.
demo: install
	$(PY) -m scripts.demo --start-stack $(DEMO_ARGS)

clean:
	-test -x $(PY) && $(PY) -m shared.embedded stop var/test
	-test -x $(PY) && $(PY) -m shared.embedded stop var
	rm -rf $(VENV) var .pytest_cache
