"""Writes ``$DAGSTER_HOME/dagster.yaml`` from the settings object.

SQLite storage under a project-local DAGSTER_HOME is the embedded default; ``dagster_storage:
postgres`` switches run, event-log and schedule storage to Postgres (dagster-postgres) by
configuration only. One pool slot for the DuckDB warehouse: DuckDB has a single writer.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from trialsynth.settings import Settings, get_settings


def dagster_yaml(settings: Settings) -> dict:
    config: dict = {
        "telemetry": {"enabled": False},
        "concurrency": {"pools": {"default_limit": 1}},
    }
    if settings.dagster_storage == "postgres":
        pg = settings.postgres
        config["storage"] = {
            "postgres": {
                "postgres_db": {
                    "hostname": pg.host,
                    "port": pg.port,
                    "username": pg.user,
                    "password": {"env": pg.password_env},
                    "db_name": pg.db,
                    # SQLAlchemy 2.1 defaults to psycopg v3, which dagster-postgres does not ship.
                    "scheme": "postgresql+psycopg2",
                }
            }
        }
    return config


def ensure_dagster_home(settings: Settings | None = None) -> Path:
    """Create DAGSTER_HOME with its dagster.yaml (rewritten only when it changes) and export it."""
    settings = settings or get_settings()
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dagster_yaml(settings), sort_keys=True)
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
