"""One typed settings object for every path and storage choice.

Values come, in increasing precedence, from the defaults below (the *embedded default*: local
files, DuckDB, SQLite Dagster storage), a YAML file (``TRIALSYNTH_CONFIG`` or ``trialsynth.yaml``
in the project root), and ``TRIALSYNTH_*`` environment variables (nested fields with ``__``,
e.g. ``TRIALSYNTH_WAREHOUSE__TARGET=clickhouse``). Switching to the scale-out stack is a matter
of configuration only.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class WarehouseSettings(BaseModel):
    """Where dbt builds the marts."""

    target: Literal["duckdb", "clickhouse"] = "duckdb"
    clickhouse_host: str = "localhost"
    clickhouse_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_database: str = "trialsynth"


class LineageSettings(BaseModel):
    """Where the hash-chained lineage log lives."""

    store: Literal["local", "s3"] = "local"
    s3_bucket: str = "trialsynth-lineage"
    s3_endpoint_url: str | None = None
    s3_retention_days: int = 3650


class PostgresSettings(BaseModel):
    """Postgres for Dagster run/event storage in the scale-out stack (password from an env var)."""

    host: str = "localhost"
    port: int = 5432
    user: str = "trialsynth"
    password_env: str = "TRIALSYNTH_PG_PASSWORD"
    db: str = "dagster"


class Settings(BaseSettings):
    """All of trialsynth's configuration. Relative paths resolve against ``root``."""

    model_config = SettingsConfigDict(env_prefix="TRIALSYNTH_", env_nested_delimiter="__", extra="forbid")

    root: Path = PROJECT_ROOT
    data_dir: Path = Path("data")
    dagster_home: Path = Path(".dagster_home")
    dbt_project_dir: Path = Path("dbt_project")
    designs_dir: Path = Path("data/designs")
    studies_dir: Path = Path("data/studies")
    registry_url: str = Field(default="", description="SQLAlchemy URL of the model registry; empty = SQLite in the lake")
    dagster_storage: Literal["sqlite", "postgres"] = "sqlite"
    postgres: PostgresSettings = PostgresSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    lineage: LineageSettings = LineageSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def _abs(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.root / p)

    @property
    def data_path(self) -> Path:
        return self._abs(self.data_dir)

    @property
    def landing_dir(self) -> Path:
        """Where sponsors drop extracts: ``<landing>/<tenant>/<study>/<drop_id>/``."""
        return self.data_path / "landing"

    @property
    def raw_dir(self) -> Path:
        """Immutable raw zone: drop bytes copied unchanged, versioned, never overwritten."""
        return self.data_path / "raw"

    @property
    def lake_dir(self) -> Path:
        """Bronze Parquet, quarantine, lineage logs and derived artefacts, per tenant/study."""
        return self.data_path / "lake"

    @property
    def warehouse_path(self) -> Path:
        """DuckDB file dbt builds into (embedded default)."""
        return self.data_path / "warehouse" / "trialsynth.duckdb"

    @property
    def dagster_home_path(self) -> Path:
        return self._abs(self.dagster_home)

    @property
    def dbt_project_path(self) -> Path:
        return self._abs(self.dbt_project_dir)

    @property
    def designs_path(self) -> Path:
        return self._abs(self.designs_dir)

    @property
    def studies_path(self) -> Path:
        return self._abs(self.studies_dir)

    @property
    def registry_sqlalchemy_url(self) -> str:
        if self.registry_url:
            return self.registry_url
        return f"sqlite:///{self.lake_dir / 'registry.sqlite'}"

    def study_dir(self, tenant: str, study: str) -> Path:
        """Lake folder of one tenant/study partition (names must be validated first)."""
        return self.lake_dir / tenant / study


class _YamlSource(PydanticBaseSettingsSource):
    """Reads ``TRIALSYNTH_CONFIG`` (or ``<root>/trialsynth.yaml`` when present)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("TRIALSYNTH_CONFIG", PROJECT_ROOT / "trialsynth.yaml"))
        if not path.is_file():
            return {}
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        return loaded


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings(root=tmp_path)``)."""
    return Settings()
