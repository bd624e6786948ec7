# crossdvp — every target bootstraps what it needs; nothing must be installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: bootstrap test demo contracts lint fmt chaos bench clean

bootstrap: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# --ignore-scripts: @chainlink/contracts declares a git dependency that the package.json
# overrides entry replaces with an empty package; no install script is needed by anything here.
node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test: bootstrap
	$(BIN)/pytest $(PYTEST_ARGS)

demo: bootstrap
	$(BIN)/crossdvp demo

contracts: node_modules/.installed
	node scripts/compile.js

lint: bootstrap
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: bootstrap
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

chaos: bootstrap
	$(BIN)/crossdvp chaos --trades 1000 --seed 1

bench: bootstrap
	$(BIN)/crossdvp contracts gas --json

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
