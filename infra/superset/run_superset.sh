#!/usr/bin/env bash
# `make superset`: Superset for the trialsynth marts on http://127.0.0.1:8088.
#   first run : install .venv-superset, create the metadata DB (SQLite in .superset_home/), the admin
#               user (password from $SUPERSET_ADMIN_PASSWORD or generated, printed once, stored in
#               .superset_home/admin_password, mode 0600) and the SECRET_KEY (.superset_home/secret_key);
#   every run : publish the marts (DuckDB: to the read-only serving file by atomic swap; ClickHouse,
#               with warehouse.target: clickhouse: as views in <database>_serving), start gunicorn,
#               re-import the dashboards bundle (datasets and charts too), apply the RLS rules,
#               tenant roles and users, then serve until interrupted.
# Environment: SUPERSET_HOME (default .superset_home), SUPERSET_PORT (8088), SUPERSET_WORKERS (2),
# SUPERSET_ADMIN_PASSWORD; TRIALSYNTH_* settings choose the warehouse (see trialsynth/settings.py).
# --no-serve: stop after provisioning (CI / scripted refresh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
VENV=$ROOT/.venv-superset
export SUPERSET_HOME=${SUPERSET_HOME:-$ROOT/.superset_home}
export SUPERSET_CONFIG_PATH=$ROOT/superset_config/superset_config.py
export FLASK_APP=superset
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
PORT=${SUPERSET_PORT:-8088}
URL=http://127.0.0.1:$PORT
SERVE=1
[ "${1:-}" = "--no-serve" ] && SERVE=0

if [ ! -f "$VENV/.installed" ] || [ infra/superset/install.sh -nt "$VENV/.installed" ]; then
  infra/superset/install.sh
fi
mkdir -p "$SUPERSET_HOME"
chmod 700 "$SUPERSET_HOME"

# The served warehouse (infra/superset/warehouse.py) from trialsynth's settings (the project venv)
# unless the caller exported it; else the embedded default layout. `warehouse.target: clickhouse`:
# views in ClickHouse (password from the env var the settings name), else the DuckDB serving file.
if [ -z "${TRIALSYNTH_SUPERSET_WAREHOUSE:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  TRIALSYNTH_SUPERSET_WAREHOUSE=$("$ROOT/.venv/bin/python" -m infra.superset.warehouse)
  export TRIALSYNTH_SUPERSET_WAREHOUSE
fi
mapfile -t SERVED < <("$VENV/bin/python" -c \
  'from infra.superset.warehouse import current; w = current(); print(w.target, w.warehouse_path, w.serving_path, sep="\n")')
TARGET=${SERVED[0]}
WAREHOUSE=${SERVED[1]}
SERVING=${SERVED[2]}
if [ "$TARGET" = clickhouse ]; then
  "$VENV/bin/python" -m infra.superset.publish_clickhouse
  # the tenant logins' passwords `make stack-up` wrote (tenant_routing.py), unless the caller named a file
  if [ -z "${TRIALSYNTH_CLICKHOUSE_TENANT_PASSWORDS:-}" ] && [ -f "$ROOT/.stack/clickhouse/tenant_passwords.json" ]; then
    export TRIALSYNTH_CLICKHOUSE_TENANT_PASSWORDS=$ROOT/.stack/clickhouse/tenant_passwords.json
  fi
else
  "$VENV/bin/python" -m infra.superset.publish --warehouse "$WAREHOUSE" --serving "$SERVING"
  # one file per tenant of rls_rules.yaml beside it: what tenant users' connections read (tenant_routing.py)
  "$VENV/bin/python" -m infra.superset.tenant_routing --warehouse "$WAREHOUSE" --serving "$SERVING"
fi

# the published data changed: drop cached chart results (superset_config.py DATA_CACHE_DIR)
rm -rf "$SUPERSET_HOME/cache/data"

SUPERSET_VERSION=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("apache_superset"))')
STAMP=$SUPERSET_HOME/.initialized-$SUPERSET_VERSION
if [ ! -f "$STAMP" ] || [ -n "${SUPERSET_ADMIN_PASSWORD:-}" ]; then
  echo "setting up the Superset metadata DB in $SUPERSET_HOME"
  "$VENV/bin/python" -c \
    'from infra.superset.provision import stored_password; print(stored_password("admin", "SUPERSET_ADMIN_PASSWORD"))' \
    | "$VENV/bin/python" -m infra.superset.init_metadata
  touch "$STAMP"
fi

"$VENV/bin/gunicorn" --bind "127.0.0.1:$PORT" --workers "${SUPERSET_WORKERS:-2}" --worker-class gthread \
  --threads 4 --timeout 120 --limit-request-line 0 --limit-request-field_size 0 \
  --access-logfile "$SUPERSET_HOME/access.log" --error-logfile "$SUPERSET_HOME/gunicorn.log" \
  "superset.app:create_app()" &
GUNICORN=$!
trap 'kill $GUNICORN 2>/dev/null || true; wait $GUNICORN 2>/dev/null || true' EXIT INT TERM

"$VENV/bin/python" -m infra.superset.provision --url "$URL" --serving "$SERVING"
echo "Superset ready on $URL (admin password in $SUPERSET_HOME/admin_password; tenant users' beside it)"
touch "$SUPERSET_HOME/ready"
if [ "$SERVE" = 1 ]; then
  wait $GUNICORN
fi
