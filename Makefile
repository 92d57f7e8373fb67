# CareHub: `make demo` runs the demo, `make test` runs every check. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test system-deps browser-deps lint lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Installs come from the lock files (exact versions and hashes, one per extra), so a new
# release of a dependency cannot change what a clean clone runs; `make lock` refreshes them.
$(VENV)/.installed: pyproject.toml requirements/demo.lock | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/demo.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements/test.lock | $(BIN)/python
	$(BIN)/pip install -q --require-hashes -r requirements/test.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/carehub demo

# The tests spawn their own mosquitto and use mosquitto_pub/mosquitto_sub. They start their own
# PostgreSQL too (initdb in a temporary directory, a free port): a cluster the package may
# start on 5432 is never used. The voice tests start coturn's turnserver the same way.
system-deps:
	@if command -v mosquitto_pub >/dev/null && { command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing mosquitto and mosquitto-clients with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	else echo "make test needs mosquitto: sudo apt-get install mosquitto mosquitto-clients" >&2; exit 1; fi
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing postgresql with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "make test needs PostgreSQL: sudo apt-get install postgresql" >&2; exit 1; fi
	@if command -v turnserver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing coturn with apt-get (the voice tests' TURN relay)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null; \
	else echo "make test needs coturn: sudo apt-get install coturn" >&2; exit 1; fi

# The console's browser tests drive Debian's chromium (Playwright never downloads a browser);
# a small Chinese font makes their screenshots legible in Chinese.
browser-deps:
	@if test -x /usr/bin/chromium && fc-list :lang=zh 2>/dev/null | grep -q .; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and fonts-wqy-microhei with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; \
	elif test -x /usr/bin/chromium; then :; \
	else echo "the console's browser tests need chromium: sudo apt-get install chromium" >&2; exit 1; fi

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Three workers on a 2-core machine: most of the suite's time is spent waiting on real
# processes (a server coming up, an outage to ride out, a minute to end), not on the CPU
# (two workers kept the load average near 0.6; `make test` took 14.5 min).
test: install-test system-deps browser-deps lint
	$(BIN)/pytest -q -n 3 --durations=15

# requirements/<extra>.lock from pyproject.toml's ranges, for Python 3.11 on any platform
# (uv's universal resolution: a hub's aarch64 wheels are hashed too). Pins already in a lock
# are kept unless the ranges exclude them; `make lock UPGRADE=--upgrade` takes the newest.
# Each role's lock is constrained to the test lock's versions: what is tested is what runs.
LOCK_EXTRAS := hub server sim eval demo voice ble
UV := $(VENV)/uv/bin/uv
LOCK := $(UV) pip compile -q pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(UPGRADE)

$(UV): | $(BIN)/python
	$(BIN)/pip install -q --target $(VENV)/uv 'uv>=0.9,<1'

lock: $(UV)
	$(LOCK) --extra test -o requirements/test.lock
	for extra in $(LOCK_EXTRAS); do \
		$(LOCK) --extra $$extra -c requirements/test.lock -o requirements/$$extra.lock || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
