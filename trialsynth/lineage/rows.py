"""Content hash of one tenant/study partition of a warehouse relation (dbt marts have no file), the
same from DuckDB and from ClickHouse for the same rows.

Definition: every row of the partition is written as canonical JSON of its values (normalized by
:func:`canonical_value`: ISO dates, UTC timestamps, Decimal without trailing zeros, ...) and hashed
with sha256; the row digests are sorted bytewise (the canonical order) and the sha256 of the column
names (canonical JSON, relation order) followed by the sorted digests is the partition's hash. So it
depends on the rows only: not on the SQL that built them, the engine, the physical row order or the
storage layout. The sort is done here, on 32-byte digests, instead of ``ORDER BY ALL`` in SQL because
the two engines do not order every type alike (collations, NaN, mixed-precision values), and sorting
fixed-size digests costs 32 bytes of memory per row whatever the row width.

Used when a dbt step records its outputs (:func:`partition_hasher`) and again when verification
re-checks them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from trialsynth.hashing import canonical_json
from trialsynth.settings import Settings

KEYS = ("tenant_id", "study_id")
_BATCH = 10_000

RowHasher = Callable[[str, str, str], str]  # (relation, tenant, study) -> sha256 hex


def canonical_value(value: Any) -> Any:
    """One engine-independent JSON value per SQL value: dates and naive timestamps as ISO text, aware
    timestamps in UTC, Decimal as plain text without trailing zeros, UUID as text, bytes as hex, arrays
    and maps element-wise; None, bool, int, float and str as they are."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    if isinstance(value, np.generic):
        return canonical_value(value.item())
    raise TypeError(f"no canonical form for a {type(value).__name__} value in a warehouse row")


def rows_sha256(columns: Sequence[str], batches: Iterable[Iterable[Sequence[Any]]]) -> str:
    """The partition hash (module docstring) of rows given in batches, in any order."""
    digests = bytearray()
    for batch in batches:
        for row in batch:
            digests += hashlib.sha256(canonical_json([canonical_value(v) for v in row]).encode()).digest()
    ordered = np.sort(np.frombuffer(bytes(digests), dtype="S32")) if digests else np.empty(0, dtype="S32")
    return hashlib.sha256(canonical_json(list(columns)).encode() + b"\n" + ordered.tobytes()).hexdigest()


def _check_keys(relation: str, columns: Sequence[str]) -> None:
    if not set(KEYS) <= set(columns):
        raise ValueError(f"{relation} has no tenant_id/study_id columns: its partition rows cannot be hashed")


def duckdb_partition_sha256(con: Any, relation: str, tenant: str, study: str) -> str:
    """Partition hash of ``relation`` (a dbt relation name from dbt's manifest, never user input) in a
    DuckDB connection. ValueError when the relation has no tenant_id/study_id columns."""
    columns = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
    _check_keys(relation, columns)
    cursor = con.execute(f"select * from {relation} where tenant_id = ? and study_id = ?", [tenant, study])

    def batches() -> Iterator[list[tuple]]:
        while batch := cursor.fetchmany(_BATCH):
            yield batch
    return rows_sha256(columns, batches())


def clickhouse_partition_sha256(client: Any, relation: str, tenant: str, study: str) -> str:
    """Partition hash of ``relation`` through a clickhouse-connect client (same rules as DuckDB's)."""
    columns = list(client.query(f"select * from {relation} limit 0").column_names)
    _check_keys(relation, columns)
    sql = f"select * from {relation} where tenant_id = {{tenant:String}} and study_id = {{study:String}}"
    with client.query_row_block_stream(sql, parameters={"tenant": tenant, "study": study}) as stream:
        return rows_sha256(columns, stream)


def warehouse_namespace(settings: Settings) -> str:
    """How lineage names the settings' warehouse: ``duckdb://<absolute file>`` or ``clickhouse://host:port``."""
    wh = settings.warehouse
    if wh.target == "duckdb":
        return f"duckdb://{settings.warehouse_path.resolve()}"
    return f"clickhouse://{wh.clickhouse_host}:{wh.clickhouse_port}"


def clickhouse_client(settings: Settings) -> Any:
    """A clickhouse-connect client for the settings' warehouse (password from its env var)."""
    import clickhouse_connect

    wh = settings.warehouse
    return clickhouse_connect.get_client(host=wh.clickhouse_host, port=wh.clickhouse_port, username=wh.clickhouse_user,
                                         password=os.environ.get(wh.clickhouse_password_env, ""),
                                         database=wh.clickhouse_database, secure=wh.clickhouse_secure, compress=False)


@contextmanager
def partition_hasher(settings: Settings) -> Iterator[tuple[str, RowHasher]]:
    """(namespace, hash function) for the settings' warehouse, connected for the block's duration
    (DuckDB read-only: call it once dbt has exited)."""
    namespace = warehouse_namespace(settings)
    if settings.warehouse.target == "duckdb":
        import duckdb

        con = duckdb.connect(str(Path(namespace[len("duckdb://"):])), read_only=True)
        try:
            yield namespace, lambda relation, tenant, study: duckdb_partition_sha256(con, relation, tenant, study)
        finally:
            con.close()
        return
    client = clickhouse_client(settings)
    try:
        yield namespace, lambda relation, tenant, study: clickhouse_partition_sha256(client, relation, tenant, study)
    finally:
        client.close()
