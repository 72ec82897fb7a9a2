"""Superset configuration for trialsynth (loaded through ``SUPERSET_CONFIG_PATH``).

State lives in ``$SUPERSET_HOME`` (``.superset_home/`` in the project root, git-ignored): the SQLite
metadata DB and the generated ``secret_key`` (mode 0600, created on first use, never in git).
Outside hosts are removed from the content-security policy, so the browser blocks the UI's
third-party telemetry pixel, map tiles and web fonts.
"""

import os
import secrets
import sqlite3
from pathlib import Path

from cachelib.file import FileSystemCache
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

_HOME = Path(os.environ.get("SUPERSET_HOME") or Path(__file__).resolve().parent.parent / ".superset_home")
_HOME.mkdir(parents=True, exist_ok=True)


def _secret(name: str) -> str:
    """Read ``$SUPERSET_HOME/<name>``, creating it (0600, 48 random bytes) on first use."""
    path = _HOME / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY") or _secret("secret_key")
SQLALCHEMY_DATABASE_URI = f"sqlite:///{_HOME / 'superset.db'}?check_same_thread=false"


# Pooled connections to the metadata DB in WAL mode with synchronous=NORMAL. Every request commits
# (audit log, sessions); with SQLite's default NullPool + rollback journal each commit and each
# reconnect cost a full fsync (~15 ms here). WAL also lets one gunicorn worker read while another writes.
SQLALCHEMY_ENGINE_OPTIONS = {"poolclass": QueuePool, "pool_size": 5, "max_overflow": 10}


@event.listens_for(Engine, "connect")
def _sqlite_wal(dbapi_connection, _record) -> None:  # noqa: ANN001 - SQLAlchemy event signature
    if isinstance(dbapi_connection, sqlite3.Connection):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


FEATURE_FLAGS = {
    # Tenant roles have no SQL Lab permission; should one be given, RLS still applies there.
    "RLS_IN_SQLLAB": True,
    # No Jinja in dataset SQL: tenants' filter values never become templates.
    "ENABLE_TEMPLATE_PROCESSING": False,
}
FAB_ADD_SECURITY_API = True  # roles and users are provisioned through the REST API
PREVENT_UNSAFE_DB_CONNECTIONS = True
SUPERSET_WEBSERVER_TIMEOUT = 60
ROW_LIMIT = 50000

# Query results and filter-state cache on disk, shared by the gunicorn workers.
_CACHE_DIR = str(_HOME / "cache")
CACHE_CONFIG = {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": _CACHE_DIR, "CACHE_DEFAULT_TIMEOUT": 600,
                "CACHE_KEY_PREFIX": "superset_"}
# Chart results are kept a day in their own folder, which run_superset.sh empties after each publish:
# the serving file only changes there, so a cached result is never staler than the published marts,
# and every dashboard after the first viewer of a tenant reads its charts from the cache.
DATA_CACHE_DIR = _HOME / "cache" / "data"
DATA_CACHE_CONFIG = {**CACHE_CONFIG, "CACHE_DIR": str(DATA_CACHE_DIR), "CACHE_DEFAULT_TIMEOUT": 86400,
                     "CACHE_KEY_PREFIX": "superset_data_"}
FILTER_STATE_CACHE_CONFIG = {**CACHE_CONFIG, "CACHE_KEY_PREFIX": "superset_filter_"}
EXPLORE_FORM_DATA_CACHE_CONFIG = {**CACHE_CONFIG, "CACHE_KEY_PREFIX": "superset_explore_"}
RESULTS_BACKEND = FileSystemCache(str(_HOME / "sqllab_results"))

# Same policy as Superset's default minus every outside host (telemetry pixel, docs, map tiles, fonts).
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
THEME_FONT_URL_ALLOWED_DOMAINS: list[str] = []

# Superset's own themes without animations: Superset 6.1's ECharts wrapper merges the theme's
# echartsOptionsOverrides into every chart, so each chart is drawn once instead of ~1 s of animation
# frames, and Ant Design's transitions are off. Main-thread work around a cold dashboard open: about
# 0.2 s less per page (benchmarks/results/superset.md). A theme change shows once Superset's memoized
# page bootstrap (CACHE_CONFIG, 10 minutes) expires. superset.config defines both themes before it
# reads this file.
from superset.config import THEME_DARK as _SUPERSET_DARK  # noqa: E402
from superset.config import THEME_DEFAULT as _SUPERSET_DEFAULT  # noqa: E402

_STILL = {"echartsOptionsOverrides": {"animation": False}, "motion": False}
THEME_DEFAULT = {**_SUPERSET_DEFAULT, "token": {**_SUPERSET_DEFAULT["token"], **_STILL}}
THEME_DARK = {**_SUPERSET_DARK, "token": {**_SUPERSET_DARK["token"], **_STILL}}


# Viewers who open a page their role does not allow (a link to an API URL, SQL Lab, a dataset
# editor) get a readable page instead of Superset's raw JSON 401/403 body. Only for browser
# navigations (Sec-Fetch-Mode: navigate, or HTML preferred over JSON): the UI's own API calls keep
# their JSON errors.
_DENIED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>No access</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto; line-height: 1.5">
<h1>You do not have access to this page</h1>
<p>Your account can view its organisation's dashboards, but not this page ({path}).</p>
<p>If you need it, ask your trialsynth administrator for access.</p>
<p><a href="/dashboard/list/">Back to the dashboards</a></p></body></html>"""


def _friendly_denials(app):  # noqa: ANN001, ANN202 - Flask app mutator
    from flask import request
    from markupsafe import escape

    @app.after_request
    def _html_for_people(response):  # noqa: ANN001, ANN202
        navigating = request.headers.get("Sec-Fetch-Mode") == "navigate" or (
            request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html")
        if response.status_code in (401, 403) and response.mimetype == "application/json" and navigating:
            response.set_data(_DENIED_PAGE.format(path=escape(request.path)))
            response.mimetype = "text/html"
        return response


FLASK_APP_MUTATOR = _friendly_denials

# Tenant routing (issue 12): every engine Superset builds for a user reads that user's tenant store
# (its own serving file / ClickHouse login); an Admin reads all tenants, anyone else is refused. The
# security manager adds the routed store to chart-data cache keys and keeps a SQL Lab query's stored
# result to its owner. See infra/superset/tenant_routing.py.
from infra.superset.tenant_routing import mutate_connection, security_manager_class  # noqa: E402

DB_CONNECTION_MUTATOR = mutate_connection
CUSTOM_SECURITY_MANAGER = security_manager_class()
