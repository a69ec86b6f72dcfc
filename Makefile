# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run cluster cluster-down test check lint security browser bench demo clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/clickrec init
	$(BIN)/clickrec serve

# The scale-out topology on this machine (docs/scale-out.md): redis-server, PostgreSQL, moto's
# S3 server, two replicas, a worker and HAProxy on :8080; pids, logs and data in var/cluster/.
# Debian's packages are installed when missing (root with apt). `make cluster-down` stops it.
cluster: $(STAMP)
	$(BIN)/python tools/cluster.py up

cluster-down:
	$(BIN)/python tools/cluster.py down

test: $(STAMP) security browser
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy src
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The fast loop while coding (well under a minute): lint, types, layers, unit tests.
check: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy src
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q tests/unit

# The dashboard test drives a real headless Chromium (Debian's chromium + chromium-driver).
# Installed when this machine can (root with apt); otherwise that one test is skipped,
# unless CLICKREC_REQUIRE_BROWSER=1 (as in CI) makes a missing browser a failure.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; } || \
	  echo "chromium not installed: the dashboard's browser test will be skipped"

# Shift-left checks: bandit fails on any medium or high finding; no secret in tracked files.
security: $(STAMP)
	$(BIN)/bandit -q -r src -ll
	$(BIN)/python tools/scan_secrets.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy src
	$(BIN)/lint-imports

# The demo lands in the home the engine uses: $CLICKREC_HOME, else ./var.
DEMO = $${CLICKREC_HOME:-var}/demo
demo: $(STAMP)
	$(BIN)/clickrec demo generate --out $(DEMO) --users 2000 --days 14
	$(BIN)/clickrec import items $(DEMO)/items.csv
	$(BIN)/clickrec import interactions $(DEMO)/interactions.csv

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/train.py

clean:
	rm -rf $(VENV)
