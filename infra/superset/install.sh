#!/usr/bin/env bash
# Superset in its own virtualenv (.venv-superset), so its pins never fight Dagster's.
# apache-superset 6.1.0 does not start without rich, cachetools and flask-caching 2.3.1.
# duckdb is pinned to the project venv's version: both write/read the same DuckDB files.
# clickhouse-connect (its SQLAlchemy dialect `clickhousedb://`) serves `warehouse.target: clickhouse`,
# pinned like duckdb to the project venv's version (the one dbt-clickhouse and the tests use).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-superset
PY=${PYTHON:-python3}
DUCKDB_PIN=duckdb
CLICKHOUSE_PIN=clickhouse-connect
if [ -x .venv/bin/python ]; then
  DUCKDB_PIN="duckdb==$(.venv/bin/python -c 'import duckdb; print(duckdb.__version__)')"
  CLICKHOUSE_PIN="clickhouse-connect==$(.venv/bin/python -c 'from importlib.metadata import version; print(version("clickhouse-connect"))')"
fi
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "apache-superset==6.1.0" rich cachetools "flask-caching==2.3.1" \
  duckdb-engine "$DUCKDB_PIN" "$CLICKHOUSE_PIN" gunicorn pyyaml requests "playwright==1.65.2"
touch "$VENV/.installed"
echo "installed Superset into $VENV"
