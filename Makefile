# Liaison: `make run` starts the whole stack, `make test` runs the suite. Both install what they
# need into .venv on first use (and again whenever pyproject.toml changes).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser run test lint bench demo clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Liaison needs Python 3.11 or newer on the PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m scripts.run

# Debian's Chromium for the console's browser tests (tests/e2e): Playwright drives it and never
# downloads a browser of its own. Installed when missing and this user may (root, or sudo without a
# password, on a system with apt-get); otherwise those tests skip and say why (with CI=true they fail).
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
	  if ! command -v apt-get >/dev/null 2>&1; then SUDO=none; \
	  elif [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "note: $(CHROMIUM) is missing and cannot be installed here: the browser tests will skip"; \
	  else echo "installing Debian's chromium for the browser tests"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; fi; }

test: install browser
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
