# Frame Buffer v2. Every target depends on `setup`, so on a fresh machine `make test`
# alone creates .venv, installs everything and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/pytest
STACK_FILE := .devstack/stack.env
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-unit test-integration test-faults test-performance test-watch test-env-up \
        test-env-down dev bench bench-quick format lint type-check check browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml sdk/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required" or 0)'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./sdk
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's chromium for the dashboard browser test; the test skips, saying why, if it cannot be had.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1) || \
	    echo "chromium could not be installed; the browser test will skip"; }

# The short fault tests run here; the long ones (marker faults_long) only in test-faults.
test: setup browser
	$(PYTEST) -q -p no:cacheprovider -m "not faults_long" tests

test-unit: setup
	$(PYTEST) -q tests/unit

test-integration: setup
	$(PYTEST) -q tests/integration

# Processes killed with SIGKILL/SIGSTOP, brokers that lose data: every fault test, long ones too.
test-faults: setup
	$(PYTEST) -q tests/faults

test-performance: bench-quick

test-watch: setup
	while true; do $(PYTEST) -q -x tests/unit; inotifywait -qq -r -e modify app agents tables bridge core devtools capture relay migrate sdk sample_processors tests 2>/dev/null || sleep 5; done

test-env-up: setup
	$(BIN)/frame-orchestrator stack up --env-file $(STACK_FILE)
	@echo "export these (or: set -a; . $(STACK_FILE); set +a):"; cat $(STACK_FILE)

test-env-down: setup
	$(BIN)/frame-orchestrator stack down --env-file $(STACK_FILE)

dev: setup
	$(BIN)/frame-orchestrator dev

bench: setup
	$(BIN)/python -m bench.run --profile full

bench-quick: setup
	$(BIN)/python -m bench.run --profile quick

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type-check: setup
	$(BIN)/mypy

check: lint type-check test-unit

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache *.egg-info
