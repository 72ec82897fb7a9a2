"""Chooses the Dagster instance folder (``DAGSTER_HOME``) and writes its ``dagster.yaml`` from the settings.

Which folder: ``$DAGSTER_HOME`` when it is set in the environment (Dagster's own convention, what
``dagster dev`` and the daemon read), else ``settings.dagster_home`` (``TRIALSYNTH_DAGSTER_HOME``,
``trialsynth.yaml``, default ``<root>/.dagster_home``). :func:`dagster_home_choice` says which one and
why; when both are set and differ, a warning names the one ignored. The chosen folder is exported as
``DAGSTER_HOME`` for this process (Dagster reads it from there); that export is remembered, so a later
call with other settings in the same process (tests) is not mistaken for a user's choice.

``dagster.yaml``: SQLite storage under DAGSTER_HOME is the embedded default; ``dagster_storage:
postgres`` switches run, event-log and schedule storage to Postgres (dagster-postgres) by
configuration only. One pool slot for the DuckDB warehouse: DuckDB has a single writer. The run
queue (Dagster's QueuedRunCoordinator, the default) launches at most one run per tenant|study
partition and ``runs_per_tenant`` runs per tenant (tests/test_run_queue.py); it holds runs submitted
to the instance (sensor daemon, schedules, backfills, the API), not ``execute_in_process`` runs. The file
carries a header saying trialsynth wrote it; a ``dagster.yaml`` without it (the user's own) is kept
as it is, with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from trialsynth.settings import Settings, get_settings

log = logging.getLogger(__name__)
HEADER = "# written by trialsynth from its settings (trialsynth/dagster_home.py); edits are overwritten\n"
_exported: tuple[str, bool] | None = None  # (value this process exported, whether it was the environment's)


@dataclass(frozen=True)
class DagsterHomeChoice:
    path: Path
    source: str  # "DAGSTER_HOME" or "settings.dagster_home"
    ignored: str | None = None  # the other, differing value that is not used, said in a warning

    def describe(self) -> str:
        return f"Dagster instance {self.path} (from {self.source})"


def dagster_home_choice(settings: Settings | None = None) -> DagsterHomeChoice:
    """``$DAGSTER_HOME`` if the environment sets it, else ``settings.dagster_home`` (see module doc)."""
    settings = settings or get_settings()
    configured = settings.dagster_home_path
    env = os.environ.get("DAGSTER_HOME")
    if env and _exported is not None and env == _exported[0] and not _exported[1]:
        env = None  # this process exported the settings' value earlier: not a user's choice
    if not env:
        return DagsterHomeChoice(configured, "settings.dagster_home")
    path = Path(env).expanduser().absolute()
    explicit = "dagster_home" in settings.model_fields_set
    ignored = f"settings.dagster_home={configured}" if explicit and configured != path else None
    return DagsterHomeChoice(path, "DAGSTER_HOME", ignored)


def dagster_yaml(settings: Settings) -> dict:
    config: dict = {
        "telemetry": {"enabled": False},
        # Runs cannot race: one run per tenant|study partition (its dagster/partition tag), at most
        # runs_per_tenant runs of one tenant (trialsynth/tenant tag). Under `concurrency: runs`, not
        # `run_queue`: Dagster refuses run_queue limits next to `concurrency: pools`.
        "concurrency": {"pools": {"default_limit": 1}, "runs": {"tag_concurrency_limits": [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": "trialsynth/tenant", "value": {"applyLimitPerUniqueValue": True}, "limit": settings.runs_per_tenant},
        ]}},
        # Dagster's QueuedRunCoordinator, plus the tenant/study tags on schedule, backfill and UI runs so
        # the per-tenant limit above holds for them too (trialsynth/run_queue.py).
        "run_coordinator": {"module": "trialsynth.run_queue", "class": "TenantTaggingRunCoordinator"},
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
    """Create the chosen DAGSTER_HOME with its dagster.yaml (rewritten only when it changes and
    trialsynth wrote it) and export it for this process."""
    global _exported
    settings = settings or get_settings()
    choice = dagster_home_choice(settings)
    if choice.ignored:
        log.warning("DAGSTER_HOME=%s is used; %s is ignored (unset DAGSTER_HOME to use it)", choice.path, choice.ignored)
    home = choice.path
    home.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(dagster_yaml(settings), sort_keys=True)
    path = home / "dagster.yaml"
    existing = path.read_text() if path.exists() else None
    if existing is not None and not existing.startswith(HEADER) and existing != body:
        log.warning("keeping %s: it was not written by trialsynth, so the settings' Dagster storage "
                    "(dagster_storage=%s) is not applied to it", path, settings.dagster_storage)
    elif existing != HEADER + body:
        path.write_text(HEADER + body)
    os.environ["DAGSTER_HOME"] = str(home)
    _exported = (str(home), choice.source == "DAGSTER_HOME")
    return home
