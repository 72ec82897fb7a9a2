"""Resources injected into assets; constructed once in :mod:`orchestration.definitions`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from trialsynth.hashing import sha256_bytes
from trialsynth.ingest.raw_zone import MANIFEST, RAW_POINTER
from trialsynth.lineage import ChainStore, LocalLineageStore, file_dataset, open_store
from trialsynth.names import split_partition_key
from trialsynth.registry import ModelRegistry
from trialsynth.settings import Settings, get_settings
from trialsynth.storage import LakeStore, open_lake_store
from trialsynth.storage.lake import PUBLISHING
from trialsynth.study_config import StudyConfig, load_study_config
from trialsynth.tenancy.lake import tenant_path
from trialsynth.tenancy.postgres import install_tenant_guard

if TYPE_CHECKING:  # pandas and polars load at run time, not with the definitions (issue 14's load budget)
    import pandas as pd
    import polars as pl


class LakeResource(dg.ConfigurableResource):
    """The lake's zones through one interface (:mod:`trialsynth.storage`): the raw zone, bronze,
    quarantine and analytics files of each tenant/study partition, on local disk or in an S3 bucket as
    the settings' ``lake.store`` says (this is the one place that chooses). Assets address files by
    partition key and a key relative to the partition (``"bronze/dm.parquet"``), never by path.

    Every key is checked to stay under the partition tenant's prefix (``..`` refused; symlinks followed
    on the local store; :func:`trialsynth.storage.tenant_key`): a job of tenant A given a key of tenant
    B raises TenantPathError before reading or writing anything. Every read of an object below a folder
    whose S3 publish has not completed (a run killed half way through publishing bronze) raises
    IncompletePublishError naming the partition; rerunning the step republishes the folder whole
    (:mod:`trialsynth.storage.lake`). ``data_dir`` (tests): another data folder than the settings'. The
    landing zone and local state (drop registries) are local folders."""

    data_dir: str = ""

    def _settings(self) -> Settings:
        settings = get_settings()
        return settings.model_copy(update={"data_dir": Path(self.data_dir)}) if self.data_dir else settings

    @property
    def landing_dir(self) -> Path:
        return self._settings().landing_dir

    @property
    def raw_dir(self) -> Path:
        """The raw zone's folder on the local store (unused when the lake is in S3)."""
        return self._settings().raw_dir

    @property
    def lake_dir(self) -> Path:
        """The lake's local folder: the whole lake on the local store; drop registries on any store."""
        return self._settings().lake_dir

    @property
    def designs_dir(self) -> Path:
        return get_settings().designs_path

    def store(self, zone: str = "lake") -> LakeStore:
        """The store of ``zone`` (``lake`` or ``raw``) the current settings choose."""
        return open_lake_store(self._settings(), zone)

    def tenant_path(self, partition_key: str, path: str | Path) -> Path:
        """``path`` (absolute, lake-relative, or a ``lake:<lake-relative>`` location), resolved, if it lies
        under the partition tenant's local folder of the lake, raw zone or landing zone; else TenantPathError."""
        text = str(path)
        return tenant_path((self.lake_dir, self.raw_dir, self.landing_dir), split_partition_key(partition_key)[0],
                           text[len("lake:"):] if text.startswith("lake:") else path)

    def study_dir(self, partition_key: str) -> Path:
        """The partition's local folder: its drop registry and other local state (and, on the local store,
        the partition's lake files, which assets reach by key, never through this path)."""
        tenant, study = split_partition_key(partition_key)
        path = self.lake_dir / tenant / study
        self.tenant_path(partition_key, path)  # a study folder symlinked into another tenant's fails here
        return path

    def study_config(self, partition_key: str) -> tuple[StudyConfig, Path | None]:
        """The partition's ``data/studies/<study>.yaml`` settings and the file they came from."""
        return load_study_config(get_settings().studies_path, split_partition_key(partition_key)[1])

    def key(self, partition_key: str, relative: str, zone: str = "lake") -> str:
        """The zone key ``<tenant>/<study>/<relative>``, checked to stay under the tenant's prefix."""
        tenant, study = split_partition_key(partition_key)
        return self.store(zone).guard(tenant, f"{tenant}/{study}/{relative}".rstrip("/"))

    def uri(self, partition_key: str, relative: str, zone: str = "lake") -> str:
        return self.store(zone).uri(self.key(partition_key, relative, zone))

    def check_partition_published(self, partition_key: str) -> None:
        """IncompletePublishError when any folder of the partition's lake has a publish that did not
        complete (:mod:`trialsynth.storage`), for readers that go to the files themselves (dbt's
        ``s3()``/``read_parquet``) rather than through the store."""
        store = self.store()
        for marker in store.list(self.key(partition_key, ""), pattern=f"*/{PUBLISHING}"):
            store.check_marker(marker)

    def reader_headers(self, partition_key: str) -> dict[str, str]:
        """HTTP headers dbt's ``s3()`` must send to read the partition's objects: its tenant's SSE-C key
        on an S3 lake with ``lake.s3_sse_c``; {} otherwise."""
        return self.store().reader_headers(split_partition_key(partition_key)[0])

    def exists(self, partition_key: str, relative: str) -> bool:
        return self.store().exists(self.key(partition_key, relative))

    def sha256(self, partition_key: str, relative: str) -> str:
        return sha256_bytes(self.store().read_bytes(self.key(partition_key, relative)))

    def delete(self, partition_key: str, relative: str) -> None:
        self.store().delete(self.key(partition_key, relative))

    def read_json(self, partition_key: str, relative: str) -> Any:
        return self.store().read_json(self.key(partition_key, relative))

    def write_json(self, partition_key: str, relative: str, value: Any) -> tuple[str, str]:
        """Store ``value`` as JSON; returns (uri, sha256)."""
        key = self.key(partition_key, relative)
        return self.store().uri(key), self.store().write_json(key, value)

    def read_bronze(self, partition_key: str, domain: str) -> pl.DataFrame:
        return self.store().read_parquet(self.key(partition_key, f"bronze/{domain}.parquet"))

    def read_table(self, partition_key: str, relative: str) -> pd.DataFrame:
        return self.store().read_pandas(self.key(partition_key, relative))

    def write_table(self, partition_key: str, relative: str, frame: pd.DataFrame | pl.DataFrame) -> tuple[str, str]:
        """Write an analytics table under the study's lake prefix, prefixed with tenant_id and
        study_id (so dbt can union all partitions); atomic. Returns (uri, sha256)."""
        import polars as pl

        tenant, study = split_partition_key(partition_key)
        df = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
        df = df.select(pl.lit(tenant).alias("tenant_id"), pl.lit(study).alias("study_id"),
                       pl.all().exclude("tenant_id", "study_id"))
        key = self.key(partition_key, relative)  # relative "../../other-tenant/..." fails here
        return self.store().uri(key), self.store().write_parquet(key, df)

    @contextmanager
    def working_copy(self, partition_key: str, *relatives: str, fetch: str = "*", zone: str = "lake") -> Iterator[Path]:
        """A local folder laid out as the zone (``<folder>/<tenant>/<study>/...``) with the partition's
        objects below ``relatives`` (those matching ``fetch``, relative to the partition), for code that
        needs files; what it changes there is published on a clean exit (:meth:`LakeStore.working_copy`)."""
        tenant, study = split_partition_key(partition_key)
        keys = [self.key(partition_key, r, zone) for r in relatives]
        with self.store(zone).working_copy(*keys, fetch=f"{tenant}/{study}/{fetch}") as root:
            yield root

    def local_uri(self, copy_root: Path, path: Path, zone: str = "lake") -> str:
        """Where a file of a :meth:`working_copy` (rooted at ``copy_root``) is published."""
        return self.store(zone).uri(path.relative_to(copy_root).as_posix())

    def known_tenants(self) -> list[str]:
        """Tenants that already have data in the raw zone (they keep their name when a new folder clashes)."""
        return self.store("raw").children()

    def point_raw(self, partition_key: str, drop_id: str, version: int) -> bool:
        """Point the partition's ``raw_pointer.json`` (the raw version its bronze step reads) at version
        ``version`` of drop ``drop_id``, as that version's raw-zone manifest says; False when it already did."""
        relative = f"{drop_id}/v{version}"
        manifest = self.store("raw").read_json(self.key(partition_key, f"{relative}/{MANIFEST}", "raw"))
        pointer = {"drop_id": drop_id, "version": version, "path": self.uri(partition_key, relative, "raw"),
                   "files": manifest["files"], "content_hash": manifest["content_hash"]}
        if self.exists(partition_key, RAW_POINTER) and self.read_json(partition_key, RAW_POINTER) == pointer:
            return False
        self.write_json(partition_key, RAW_POINTER, pointer)
        return True


def lake_dataset(uri: str, sha256: str) -> dict[str, str]:
    """A lake file or object (a :meth:`LakeResource.uri`) as a lineage output dataset: S3 objects as
    namespace ``s3://<bucket>``, name = object key (what verification re-reads); files by path."""
    if uri.startswith("s3://"):
        bucket, key = uri[len("s3://"):].split("/", 1)
        return {"namespace": f"s3://{bucket}", "name": key, "sha256": sha256, "kind": "bytes"}
    return file_dataset(uri, sha256)


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
        :data:`trialsynth.lineage.manifest.RECORD_FIELDS`. ``output_path``: the lake file or object
        (:meth:`LakeResource.uri`) whose sha256 is ``output_sha256`` (verification re-hashes it; without it
        the output has no location)."""
        tenant, study = split_partition_key(partition_key)
        if output_path is not None:
            if not fields.get("output_sha256"):
                raise ValueError("output_path needs output_sha256 (the sha256 of that file)")
            fields["outputs"] = [lake_dataset(str(output_path), fields["output_sha256"])]
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
