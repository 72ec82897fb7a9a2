"""Resources injected into assets; constructed once in :mod:`orchestration.definitions`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import polars as pl
from pydantic import PrivateAttr

from trialsynth.ingest.bronze import write_parquet_atomic
from trialsynth.lineage import ChainStore, LocalLineageStore, file_dataset, open_store
from trialsynth.names import split_partition_key
from trialsynth.registry import ModelRegistry
from trialsynth.settings import Settings, get_settings
from trialsynth.study_config import StudyConfig, load_study_config
from trialsynth.tenancy.lake import tenant_path
from trialsynth.tenancy.postgres import install_tenant_guard


class LakeResource(dg.ConfigurableResource):
    """Paths of the landing zone, raw zone and lake. Empty values fall back to :class:`Settings`.

    Every path it hands out or opens for a partition is checked to stay under the partition tenant's
    folders (``..`` and symlinks followed; :func:`trialsynth.tenancy.tenant_path`): a job of tenant A
    given a path of tenant B raises TenantPathError before reading or writing anything."""

    data_dir: str = ""

    def _settings(self) -> Settings:
        settings = get_settings()
        return settings.model_copy(update={"data_dir": Path(self.data_dir)}) if self.data_dir else settings

    @property
    def landing_dir(self) -> Path:
        return self._settings().landing_dir

    @property
    def raw_dir(self) -> Path:
        return self._settings().raw_dir

    @property
    def lake_dir(self) -> Path:
        return self._settings().lake_dir

    @property
    def designs_dir(self) -> Path:
        return get_settings().designs_path

    def tenant_path(self, partition_key: str, path: str | Path) -> Path:
        """``path`` (absolute, lake-relative, or a ``lake:<lake-relative>`` location), resolved, if it lies
        under the partition tenant's folder of the lake, raw zone or landing zone; else TenantPathError."""
        text = str(path)
        return tenant_path((self.lake_dir, self.raw_dir, self.landing_dir), split_partition_key(partition_key)[0],
                           text[len("lake:"):] if text.startswith("lake:") else path)

    def study_dir(self, partition_key: str) -> Path:
        tenant, study = split_partition_key(partition_key)
        path = self.lake_dir / tenant / study
        self.tenant_path(partition_key, path)  # a study folder symlinked into another tenant's fails here
        return path

    def study_config(self, partition_key: str) -> tuple[StudyConfig, Path | None]:
        """The partition's ``data/studies/<study>.yaml`` settings and the file they came from."""
        return load_study_config(get_settings().studies_path, split_partition_key(partition_key)[1])

    def read_bronze(self, partition_key: str, domain: str) -> pl.DataFrame:
        return pl.read_parquet(self.tenant_path(partition_key, self.study_dir(partition_key) / "bronze" / f"{domain}.parquet"))

    def write_table(self, partition_key: str, relpath: str, frame: pd.DataFrame | pl.DataFrame) -> tuple[Path, str]:
        """Write an analytics table under the study's lake folder, prefixed with tenant_id and
        study_id (so dbt can union all partitions); atomic. Returns (path, sha256)."""
        tenant, study = split_partition_key(partition_key)
        df = pl.from_pandas(frame) if isinstance(frame, pd.DataFrame) else frame
        df = df.select(pl.lit(tenant).alias("tenant_id"), pl.lit(study).alias("study_id"),
                       pl.all().exclude("tenant_id", "study_id"))
        path = self.study_dir(partition_key) / relpath
        self.tenant_path(partition_key, path)  # relpath "../../other-tenant/..." fails here
        return path, write_parquet_atomic(df, path)


class LineageResource(dg.ConfigurableResource):
    """Signed, hash-chained lineage manifests (:mod:`trialsynth.lineage`), one chain per tenant/study.
    ``store``: ``'local'`` (under the lake) or ``'s3'`` (the Object Lock bucket of ``lineage.s3_*``);
    empty = ``lineage.store`` from the settings. Manifests carry the Dagster run id of the run."""

    store: str = ""
    lake_dir: str = ""
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id

    def get_store(self) -> ChainStore:
        settings = get_settings()
        kind = self.store or settings.lineage.store
        if kind == "local":
            return LocalLineageStore(Path(self.lake_dir) if self.lake_dir else settings.lake_dir)
        if kind == "s3":
            return open_store(settings.model_copy(update={"lineage": settings.lineage.model_copy(update={"store": "s3"})}))
        raise ValueError(f"lineage store {kind!r} is not known (expected 'local' or 's3')")

    def record(self, partition_key: str, output_path: Path | str | None = None, **fields: Any) -> dict:
        """Append the manifest of one materialization; ``fields`` as in
        :data:`trialsynth.lineage.manifest.RECORD_FIELDS`. ``output_path``: the lake file whose sha256 is
        ``output_sha256`` (verification re-hashes it; without it the output has no location)."""
        tenant, study = split_partition_key(partition_key)
        if output_path is not None:
            if not fields.get("output_sha256"):
                raise ValueError("output_path needs output_sha256 (the sha256 of that file)")
            fields["outputs"] = [file_dataset(output_path, fields["output_sha256"])]
        return self.get_store().append(tenant, study, {"partition": partition_key, "run_id": self._run_id, **fields})


class RegistryResource(dg.ConfigurableResource):
    """The model registry (SQLAlchemy URL; empty = the settings' default, SQLite in the lake).

    In a run of one tenant|study partition the registry's engine is bound to that tenant: on
    Postgres every transaction sets ``app.current_tenant`` and row-level security shows only the
    tenant's models (trialsynth.tenancy). Outside a run, the caller's ``tenant_scope`` decides."""

    url: str = ""
    _tenant: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        key = run.tags.get("dagster/partition") if run is not None else None
        self._tenant = split_partition_key(key)[0] if key else None

    def get(self) -> ModelRegistry:
        url = self.url or get_settings().registry_sqlalchemy_url
        if self._tenant is None or not url.startswith("postgresql"):
            return ModelRegistry(url)
        from sqlalchemy import create_engine

        return ModelRegistry(engine=install_tenant_guard(create_engine(url), tenant=self._tenant))
