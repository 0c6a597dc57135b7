# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create (or reuse) the project-local virtualenv .venv and install the pinned packages.

PYTHON ?= python3.11
# Options for the script behind a target (demo, standalone, the benchmarks), e.g.
# ARGS="--api-port 8081"; `.venv/bin/python scripts/<script>.py --help` lists them with defaults.
ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-under-load airflow lint benchmark benchmark-marts benchmark-catchup standalone dashboards dashboards-check clean

$(STAMP): requirements.txt requirements-embedded.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

# Superset, for the dashboards and their test, in a virtualenv of its own (its pins clash
# with Airflow's); scripts/dashboards.py reinstalls it when deploy/superset/requirements.txt changes.
DASHBOARDS_VENV := .local/dashboards/venv/.installed
$(DASHBOARDS_VENV): deploy/superset/requirements.txt $(STAMP)
	$(BIN)/python -c "import sys; sys.path.insert(0, 'scripts'); import dashboards; dashboards.ensure_virtualenv(dashboards.HOME)"

# Headless Chromium for the dashboard test: Debian's packages, nothing downloads a browser.
BROWSER := /usr/bin/chromedriver
$(BROWSER):
	@command -v apt-get >/dev/null || { echo "the dashboard test needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): install them, then run make test again"; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
	  || { echo "could not install chromium and chromium-driver with apt-get (it needs root): install them, then run make test again"; exit 1; }

demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(ARGS)

# The Purchases dashboard in Superset on the demo's marts (the demo runs first if needed).
dashboards: $(STAMP) $(DASHBOARDS_VENV)
	$(BIN)/python scripts/dashboards.py serve $(ARGS)

# The same, checked in headless Chromium and against the marts, then stopped.
dashboards-check: $(STAMP) $(DASHBOARDS_VENV) $(BROWSER)
	$(BIN)/python scripts/dashboards.py check $(ARGS)

test: $(STAMP) $(DASHBOARDS_VENV) $(BROWSER)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The whole suite three times in a row beside a busy loop: no test may depend on timing.
test-under-load: $(STAMP)
	$(BIN)/python scripts/suite_under_load.py $(ARGS)

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark_ingest.py $(ARGS)

benchmark-marts: $(STAMP)
	$(BIN)/python scripts/benchmark_marts.py $(ARGS)

benchmark-catchup: $(STAMP)
	$(BIN)/python scripts/benchmark_catchup.py $(ARGS)

standalone: $(STAMP)
	$(BIN)/python scripts/standalone.py $(ARGS)

# The airflow CLI against the stack of `make standalone`, e.g. make airflow ARGS="dags list".
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py $(ARGS)

clean:
	rm -rf .local
