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
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class WarehouseSettings(BaseModel):
    """Where dbt builds the marts."""

    target: Literal["duckdb", "clickhouse"] = "duckdb"
    clickhouse_host: str = "localhost"
    clickhouse_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_database: str = "trialsynth"
    clickhouse_password_env: str = "TRIALSYNTH_CLICKHOUSE_PASSWORD"  # name of the env var holding the password
    clickhouse_secure: bool = False  # HTTPS (e.g. port 8443) instead of plain HTTP


class LineageSettings(BaseModel):
    """Where the signed, hash-chained lineage manifests live (see trialsynth/lineage/)."""

    store: Literal["local", "s3"] = "local"
    s3_bucket: str = "trialsynth-lineage"  # must have been created with Object Lock enabled
    s3_endpoint_url: str | None = None  # credentials: the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    s3_retention_days: int = Field(default=3650, gt=0)  # COMPLIANCE retention of every lineage object
    # Ed25519 key file (0600, created on first use); empty = <data dir's parent>/.trialsynth-keys/
    signing_key_path: Path | None = None
    # Key ids ("ed25519-<16 hex>") verification trusts besides the local signing key's own.
    trusted_key_ids: list[str] = []


class LakeSettings(BaseModel):
    """Where the raw zone, bronze, quarantine and analytics files live (:mod:`trialsynth.storage`).

    ``local``: ``<data_dir>/raw`` and ``<data_dir>/lake`` (embedded default). ``s3``: the bucket, keys
    ``<s3_prefix>/raw/<tenant>/<study>/...`` and ``<s3_prefix>/lake/<tenant>/<study>/...``; credentials
    from the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables, never from settings. The landing
    zone (sponsors' drops) and local state (drop registries) stay in ``data_dir`` either way."""

    store: Literal["local", "s3"] = "local"
    s3_bucket: str = "trialsynth-lake"
    s3_prefix: str = ""  # e.g. "prod": keys below prefix/raw/ and prefix/lake/
    s3_endpoint_url: str | None = None  # None = AWS; else e.g. http://127.0.0.1:8333 (path-style)
    s3_region: str = "us-east-1"
    # The raw zone (the sponsor's bytes) in S3: its bucket ("" = s3_bucket), which must have Object Lock
    # when raw_retention_days > 0: every raw object is written with COMPLIANCE retention for that many
    # days (verified after the write); 0 = plain objects. The local store ignores both.
    s3_raw_bucket: str = ""
    raw_retention_days: float = Field(default=2555, ge=0)
    # The lake zone's objects (bronze, quarantine and analytics Parquet, evidence, models) in S3 under
    # SSE-C with the tenant's own key on every request (trialsynth.security.sse); false = the bucket's
    # default encryption only. The local store ignores it (its files are left to disk encryption).
    s3_sse_c: bool = True

    @property
    def raw_bucket(self) -> str:
        return self.s3_raw_bucket or self.s3_bucket

    @field_validator("s3_prefix")
    @classmethod
    def _plain_prefix(cls, prefix: str) -> str:
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"lake.s3_prefix: expected a plain key prefix like 'prod' or 'a/b', got {prefix!r}")
        return prefix


class PostgresSettings(BaseModel):
    """Postgres for Dagster run/event storage in the scale-out stack (password from an env var)."""

    host: str = "localhost"
    port: int = 5432
    user: str = "trialsynth"
    password_env: str = "TRIALSYNTH_PG_PASSWORD"
    db: str = "dagster"


class SecuritySettings(BaseModel):
    """Envelope encryption keys (see docs/security.md and trialsynth/security/)."""

    kms: Literal["local", "aws", "vault"] = "local"
    # Local keyring (0600, created on first use); empty = <data dir's parent>/.trialsynth-keys/keyring.json
    keyring_path: Path | None = None
    # Tenants whose keys must exist and open their canary before anything starts (check_keys).
    tenants: list[str] = []
    segment_size: int = Field(default=1 << 20, ge=4096, le=1 << 30)  # plaintext bytes per AEAD segment
    aws_region: str | None = None  # None: boto3's default chain (AWS_REGION / profile)
    aws_endpoint_url: str | None = None
    aws_key_alias_prefix: str = "alias/trialsynth/"  # one KMS key per tenant version: <prefix><tenant>/v<N>
    vault_addr: str = "http://127.0.0.1:8200"
    vault_token_env: str = "VAULT_TOKEN"  # name of the env var holding the Vault token, never the token
    vault_transit_mount: str = "transit"
    vault_key_prefix: str = "trialsynth-"  # transit key <prefix><tenant>; its versions are the KEK versions


class ApiSettings(BaseModel):
    """The product API (``trialsynth api``, trialsynth/api/): tokens, limits, its store, the Dagster it submits to."""

    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"  # HS256 only for the embedded default; RS256 needs jwks_path
    jwt_secret_env: str = "TRIALSYNTH_API_JWT_SECRET"  # NAME of the env var with the HS256 secret (unset: a 0600 key file)
    jwks_path: Path | None = None  # RS256: JWKS file with the token issuer's public keys
    audience: str = "trialsynth-api"
    issuer: str = "trialsynth"
    cors_origins: list[str] = []  # allow-list; empty = CORS closed; "*" is refused
    rate_per_s: float = Field(default=50.0, gt=0)  # requests per second per tenant (token bucket) ...
    rate_burst: int = Field(default=100, ge=1)  # ... with this burst
    quota_per_day: int = Field(default=500, ge=1)  # jobs and uploads per tenant per UTC day
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # JSON bodies
    max_upload_bytes: int = Field(default=256 << 20, ge=1024)  # one EDC drop upload
    request_timeout_s: float = Field(default=30.0, gt=0)
    dagster_url: str = "http://127.0.0.1:3000/graphql"  # GraphQL endpoint of the deployment's Dagster webserver
    dagster_timeout_s: float = Field(default=5.0, gt=0)
    store_url: str = ""  # SQLAlchemy URL of the API store (jobs, idempotency keys); empty = SQLite under the lake
    # Presigned S3 uploads of EDC drops (docs/api.md): bucket (empty = multipart only), endpoint (None: AWS;
    # credentials from the usual AWS_* variables) and how long the PUT URLs stay valid.
    upload_bucket: str = ""
    upload_s3_endpoint_url: str | None = None
    upload_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 86400)
    # Base URL browsers reach the API at: the evidence report links on Dagster's asset pages point here
    # (trialsynth/api/report_links.py); the default is `trialsynth api serve`'s address.
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, origins: list[str]) -> list[str]:
        if any("*" in o for o in origins):
            raise ValueError("api.cors_origins: '*' is refused; list the allowed origins one by one")
        return origins

    @model_validator(mode="after")
    def _rs256_needs_jwks(self) -> ApiSettings:
        if self.jwt_algorithm == "RS256" and self.jwks_path is None:
            raise ValueError("api.jwks_path is required with api.jwt_algorithm RS256")
        return self


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
    lake: LakeSettings = LakeSettings()
    lineage: LineageSettings = LineageSettings()
    security: SecuritySettings = SecuritySettings()
    api: ApiSettings = ApiSettings()
    runs_per_tenant: int = Field(default=4, ge=1)  # Dagster run queue: runs of one tenant at once (one per study)

    @model_validator(mode="after")
    def _s3_lake_needs_clickhouse(self) -> Settings:
        if self.lake.store == "s3" and self.warehouse.target == "duckdb":
            raise ValueError("lake.store s3 needs warehouse.target clickhouse: dbt's DuckDB target reads the lake "
                             "as local files (DuckDB here has no httpfs to read S3)")
        return self

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
