# CareHub: `make demo` runs the demo, `make test` runs every check. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test system-deps browser-deps lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
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

test: install-test system-deps browser-deps lint
	$(BIN)/pytest -q -n 2 --durations=15

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
