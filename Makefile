# crossdvp — every target bootstraps what it needs; nothing must be installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: bootstrap test demo contracts lint fmt chaos bench clean browser

bootstrap: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# --ignore-scripts: @chainlink/contracts declares a git dependency that the package.json
# overrides entry replaces with an empty package; no install script is needed by anything here.
# `npm install --no-save` rather than `npm ci`: the lock pins every version, but it can only list
# the anvil binary packages the registry served when it was written (linux-x64 here), and `npm ci`
# refuses a lock that lacks the other platforms' optional packages. --no-save keeps the lock as is.
node_modules/.installed: package.json package-lock.json
	npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The console's browser tests drive Debian's Chromium through Playwright (which never downloads a
# browser of its own); install it only when it is missing.
# Without root (a laptop), the browser tests skip; with CI=true a missing browser fails the run.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif [ "$$CI" = true ]; then echo "chromium is missing and apt-get needs root" >&2; exit 1; \
	  else echo "note: /usr/bin/chromium missing; the console's browser tests will be skipped" >&2; fi; }

test: bootstrap browser
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
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install --quiet -e '.[bench]'
	$(BIN)/crossdvp bench --json --out bench/results.json --plot bench/results.png

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
