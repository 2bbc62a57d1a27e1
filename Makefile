# Two commands for a newcomer: `make demo` and `make test`. Both install what they need first (idempotent, fast
# when nothing changed: the stamps only move when a dependency file does).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PY_STAMP   := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo test test-unit clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "authwatch needs Python 3.11+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for Azurite: apt-get install -y nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: install
	$(VENV)/bin/authwatch demo

test: install
	$(PY) -m pytest

test-unit: $(PY_STAMP)
	$(PY) -m pytest tests/unit

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis
