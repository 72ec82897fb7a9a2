"""Content hash of one tenant/study partition of a warehouse relation (dbt marts have no file).

The rows are selected ``ORDER BY ALL`` (every column, left to right) and each row is hashed as
canonical JSON, after the column names, so the hash depends on the data only: not on the SQL that
built it, the physical row order or the storage layout. Used when a dbt step records its outputs
and again when verification re-checks them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from trialsynth.hashing import canonical_json

_BATCH = 10_000


def duckdb_partition_sha256(con: Any, relation: str, tenant: str, study: str) -> str:
    """sha256 of ``relation``'s rows where tenant_id/study_id match, in canonical order.

    ``relation`` is a dbt relation name (quoted identifiers from dbt's manifest, never user input).
    Raises ValueError when the relation has no tenant_id/study_id columns.
    """
    columns = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
    if not {"tenant_id", "study_id"} <= set(columns):
        raise ValueError(f"{relation} has no tenant_id/study_id columns: its partition rows cannot be hashed")
    cursor = con.execute(f"select * from {relation} where tenant_id = ? and study_id = ? order by all", [tenant, study])
    digest = hashlib.sha256(canonical_json(columns).encode() + b"\n")
    while batch := cursor.fetchmany(_BATCH):
        digest.update("".join(canonical_json(list(row)) + "\n" for row in batch).encode())
    return digest.hexdigest()
