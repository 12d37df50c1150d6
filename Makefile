VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint emulator browser bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) app.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "Browser tests need Debian's chromium: run 'apt-get install chromium' as root."; exit 1; }

test: lint browser
	$(PY) -m pytest -q

# The fast layer: no emulator, app process or browser (tests/conftest.py marks those "system").
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not system"

emulator: $(STAMP)
	$(PY) -m tests.emulator --port 8765

# Benchmarks for "Cost and speed" (minutes, not part of `make test`): figures in bench/RESULTS.md,
# JSON and plots in bench/results/. Each script also takes --quick for a smoke run.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.overhead --profile
	$(PY) -m bench.replay_growth
	$(PY) -m bench.concurrency
	$(PY) -m bench.startup_memory --drop-caches
