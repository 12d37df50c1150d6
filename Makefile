VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint emulator browser postgres haproxy docker-engine docker-test bench

# One install at a time: `make emulator` and `make run` started together in two terminals on a
# fresh clone would otherwise run pip twice into one virtualenv (which breaks it); the second
# waits for the lock, then finds the install done.
$(STAMP): pyproject.toml
	@flock $(VENV).lock sh -c 'test $(STAMP) -nt pyproject.toml || { set -e; \
	  echo "Installing Retouch and its test tools into $(VENV) (about a minute the first time)"; \
	  python3 -m venv $(VENV); \
	  $(PY) -m pip install --quiet --upgrade pip; \
	  $(PY) -m pip install --quiet -e ".[dev]"; \
	  touch $(STAMP); }'

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

# The PostgreSQL tests start their own throw-away cluster (tests/postgres.py) with Debian's
# binaries; installing the package must not start its default cluster (policy-rc.d says no).
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
	       && apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; rc=$$?; rm -f /usr/sbin/policy-rc.d; test $$rc -eq 0; } \
	  || { echo "The PostgreSQL tests need Debian's postgresql: run 'apt-get install postgresql' as root."; exit 1; }

# The load-balancer tests (tests/test_balancer.py) run Debian's haproxy on loopback with
# deploy/haproxy.cfg; the package's own service must not start (policy-rc.d again).
haproxy:
	@command -v haproxy >/dev/null 2>&1 \
	  || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
	       && apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; rc=$$?; rm -f /usr/sbin/policy-rc.d; test $$rc -eq 0; } \
	  || { echo "The load-balancer tests need Debian's haproxy: run 'apt-get install haproxy' as root."; exit 1; }

# The image tests (tests/test_docker_image.py) build and run the real image with Debian's
# docker.io; the package must not start its service (policy-rc.d), dockerd is started here in
# the background (if not already running) and waited for at most 60 s. docker-compose (Debian's
# v1) checks docker-compose.yml; debootstrap makes the local base image (tests/docker_base.sh).
DOCKERD_LOG ?= /var/log/retouch-dockerd.log
docker-engine:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 \
	  || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
	       && apt-get update -qq && apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null; rc=$$?; rm -f /usr/sbin/policy-rc.d; test $$rc -eq 0; } \
	  || { echo "The image tests need Debian's docker.io, docker-compose and debootstrap: run 'apt-get install docker.io docker-compose debootstrap' as root."; exit 1; }
	@docker info >/dev/null 2>&1 || { nohup dockerd >$(DOCKERD_LOG) 2>&1 & \
	  for i in $$(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "dockerd did not answer within 60 s:"; tail -20 $(DOCKERD_LOG); exit 1; }

docker-test: $(STAMP) docker-engine
	$(PY) -m pytest -q -m docker

test: lint browser postgres haproxy docker-test
	$(PY) -m pytest -q -m "not docker"

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
