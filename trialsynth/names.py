"""Safe tenant / study / drop names.

These names become directory names, Dagster partition keys, SQL literals in dbt vars and S3 key
prefixes, so anything outside a conservative pattern is refused up front (``../``, spaces, quotes,
semicolons, ``|`` which separates the partition key's parts).
"""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARTITION_SEP = "|"


def validate_name(value: str, kind: str = "name") -> str:
    """Return ``value`` if it is a safe name, else raise ValueError saying what is allowed."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid {kind} {value!r}: use 1-64 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (no '..', '/', spaces, quotes or SQL metacharacters)"
        )
    return value


def partition_key(tenant: str, study: str) -> str:
    """Dagster partition key of a tenant/study: ``"acme|ACME-001"``."""
    return f"{validate_name(tenant, 'tenant')}{PARTITION_SEP}{validate_name(study, 'study')}"


def split_partition_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`partition_key`, validating both parts."""
    tenant, sep, study = key.partition(PARTITION_SEP)
    if not sep:
        raise ValueError(f"invalid partition key {key!r}: expected 'tenant{PARTITION_SEP}study'")
    return validate_name(tenant, "tenant"), validate_name(study, "study")
