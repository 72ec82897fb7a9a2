#!/bin/sh
# Superset container entry point (image: infra/docker/Dockerfile.superset).
#   serve     : gunicorn on 0.0.0.0:$SUPERSET_PORT (what the Superset chart's node pods run)
#   init      : (the node pod's init container) metadata DB migrations, roles and the admin user
#               (password from $SUPERSET_ADMIN_PASSWORD, a Secret, piped on stdin, never on a command
#               line), then a loopback-only server for the time of `provision`, as run_superset.sh does
#   provision : import the dashboards bundle and apply the RLS rules, tenant roles and users through
#               the REST API of $SUPERSET_URL, idempotently
set -eu
mode=${1:-serve}
case "$mode" in
  serve)
    exec gunicorn --bind "0.0.0.0:${SUPERSET_PORT:-8088}" --workers "${SUPERSET_WORKERS:-2}" \
      --worker-class gthread --threads 4 --timeout 120 --worker-tmp-dir /tmp \
      --limit-request-line 0 --limit-request-field_size 0 --access-logfile - --error-logfile - \
      "superset.app:create_app()"
    ;;
  init)
    : "${SUPERSET_ADMIN_PASSWORD:?set SUPERSET_ADMIN_PASSWORD from a Secret}"
    printf '%s\n' "$SUPERSET_ADMIN_PASSWORD" | python -m infra.superset.init_metadata
    gunicorn --bind "127.0.0.1:${SUPERSET_PORT:-8088}" --workers 1 --worker-class gthread --threads 4 \
      --timeout 120 --worker-tmp-dir /tmp "superset.app:create_app()" &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT INT TERM
    python -m infra.superset.provision --url "http://127.0.0.1:${SUPERSET_PORT:-8088}" \
      --serving "${SUPERSET_SERVING_PATH:-/var/lib/superset/serving/marts.duckdb}"
    ;;
  provision)
    exec python -m infra.superset.provision --url "${SUPERSET_URL:?set SUPERSET_URL}" \
      --serving "${SUPERSET_SERVING_PATH:-/var/lib/superset/serving/marts.duckdb}"
    ;;
  *)
    echo "usage: superset-entrypoint serve|init|provision" >&2
    exit 2
    ;;
esac
