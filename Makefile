# SocialPulse: `make demo` runs the whole platform on embedded defaults; `make test` runs every test tier.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/requirements.lock
# torch is locked as the CPU build; this machine keeps that wheel in /opt/wheels, elsewhere it comes
# from the PyTorch CPU index
TORCH_SRC := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export SPARK_LOCAL_IP := 127.0.0.1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: install demo test test-unit test-integration test-live lock services-up services-down clean bench

# Debian's Chromium for the dashboard's browser test (playwright drives it; no browser is ever downloaded);
# installed when make runs as root, else named (the platform itself runs without it)
install: $(VENV)/.installed
	@test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "note: /usr/bin/chromium is missing; the dashboard's browser test needs it (as root: apt-get install chromium)"; fi; }

$(VENV)/.installed: $(LOCK) requirements/nodeps.txt requirements/overrides.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python -q -r $(LOCK) --override requirements/overrides.txt $(TORCH_SRC)
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -r requirements/nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	$(BIN)/python -c "import duckdb_extensions; duckdb_extensions.import_extension('delta')"
	touch $@

lock:
	$(BIN)/uv pip compile requirements/requirements.in -c requirements/constraints.txt \
	  --override requirements/overrides.txt --python-version 3.11 $(TORCH_SRC) -o $(LOCK)

demo: install
	$(BIN)/socialpulse demo

test: install
	$(BIN)/pytest tests/unit tests/integration tests/e2e tests/live -q

test-unit: install
	$(BIN)/pytest tests/unit -q

test-integration: install
	$(BIN)/pytest tests/integration tests/e2e -q

# the platform as `make demo` leaves it running, driven through its API (a few minutes)
test-live: install
	$(BIN)/pytest tests/live -q -s

services-up: install
	$(BIN)/socialpulse services up

services-down:
	$(BIN)/socialpulse services down

bench: install
	$(BIN)/socialpulse bench build --scale small
	$(BIN)/socialpulse bench ingest --scale small

clean: services-down
	rm -rf .socialpulse
