"""Storage of the lake's zones behind one interface (see :mod:`trialsynth.storage.lake`)."""

from trialsynth.storage.lake import (
    IncompletePublishError,
    LakeStore,
    LocalLakeStore,
    LockedObjectError,
    S3LakeStore,
    open_lake_store,
    open_lake_stores,
    parquet_bytes,
    tenant_key,
)

__all__ = ["IncompletePublishError", "LockedObjectError", "LakeStore", "LocalLakeStore", "S3LakeStore", "open_lake_store", "open_lake_stores", "parquet_bytes", "tenant_key"]
