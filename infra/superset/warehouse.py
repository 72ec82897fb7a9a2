"""The warehouse Superset serves, from trialsynth's settings: the read-only DuckDB serving file
(embedded default) or ClickHouse (``warehouse.target: clickhouse``, through clickhouse-connect's
SQLAlchemy dialect ``clickhousedb://``). Plain Python so both virtualenvs can import it.

trialsynth's settings are only importable in the project venv, so ``run_superset.sh`` runs
``.venv/bin/python -m infra.superset.warehouse`` (one JSON line, no secrets: the ClickHouse password
is named by its env var) and exports it as ``TRIALSYNTH_SUPERSET_WAREHOUSE`` for publish and
provision, which run in ``.venv-superset``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

ENV_VAR = "TRIALSYNTH_SUPERSET_WAREHOUSE"
PASSWORD_MASK = "XXXXXXXXXX"  # Superset's mask: an imported URI with it keeps the password given beside it
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServedWarehouse:
    """Where the dashboards' data lives.

    ``duckdb``: ``warehouse_path`` (dbt's file) is published to ``serving_path`` (read-only copy).
    ``clickhouse``: dbt's database ``clickhouse_database`` is published as views in
    ``serving_database`` on the same server; the password is read from ``clickhouse_password_env``.
    """

    target: Literal["duckdb", "clickhouse"] = "duckdb"
    warehouse_path: str = str(_ROOT / "data" / "warehouse" / "trialsynth.duckdb")
    serving_path: str = str(_ROOT / "data" / "serving" / "marts.duckdb")
    clickhouse_host: str = "localhost"
    clickhouse_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_database: str = "trialsynth"
    clickhouse_password_env: str = "TRIALSYNTH_CLICKHOUSE_PASSWORD"
    clickhouse_secure: bool = False

    def __post_init__(self) -> None:
        if self.target not in ("duckdb", "clickhouse"):
            raise ValueError(f"target must be duckdb or clickhouse, got {self.target!r}")

    @property
    def serving_database(self) -> str:
        """ClickHouse database holding the views Superset reads (created by publish)."""
        return f"{self.clickhouse_database}_serving"

    @property
    def schema(self) -> str:
        """The schema of every dataset in Superset."""
        return "main" if self.target == "duckdb" else self.serving_database

    def clickhouse_password(self) -> str:
        return os.environ.get(self.clickhouse_password_env, "")

    def clickhouse_uri(self, password: str = PASSWORD_MASK) -> str:
        """clickhouse-connect SQLAlchemy URI of the serving database; compress=false: Superset's
        results are at most a chart's row limit, and the local chDB stand-in sends them raw."""
        secure = "&secure=true" if self.clickhouse_secure else ""
        return (f"clickhousedb://{quote(self.clickhouse_user, safe='')}:{quote(password, safe='')}@"
                f"{self.clickhouse_host}:{self.clickhouse_port}/{self.serving_database}?compress=false{secure}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServedWarehouse:
        return cls(**json.loads(text))


def from_settings() -> ServedWarehouse:
    """The served warehouse of trialsynth's settings (project venv only)."""
    from trialsynth.settings import get_settings

    s = get_settings()
    wh = s.warehouse
    return ServedWarehouse(target=wh.target, warehouse_path=str(s.warehouse_path),
                           serving_path=str(s.data_path / "serving" / "marts.duckdb"),
                           clickhouse_host=wh.clickhouse_host, clickhouse_port=wh.clickhouse_port,
                           clickhouse_user=wh.clickhouse_user, clickhouse_database=wh.clickhouse_database,
                           clickhouse_password_env=wh.clickhouse_password_env, clickhouse_secure=wh.clickhouse_secure)


def current() -> ServedWarehouse:
    """``$TRIALSYNTH_SUPERSET_WAREHOUSE`` when set, else trialsynth's settings when importable,
    else the embedded default layout."""
    if os.environ.get(ENV_VAR):
        return ServedWarehouse.from_json(os.environ[ENV_VAR])
    try:
        return from_settings()
    except ImportError:
        return ServedWarehouse()


if __name__ == "__main__":
    print(from_settings().to_json())
