"""Safe tenant / study / drop names, and when two tenant names count as the same tenant.

These names become directory names, Dagster partition keys, SQL literals in dbt vars and S3 key
prefixes, so anything outside a conservative pattern is refused up front (``../``, spaces, quotes,
semicolons, ``|`` which separates the partition key's parts, and every non-ASCII character, so
Unicode look-alikes such as a Cyrillic ``а`` in ``аcme`` never become a tenant).

Two valid tenant names are *the same tenant* when their :func:`tenant_identity` is equal. The
identity ignores what a person reading a folder listing, a case-insensitive file system (macOS,
Windows/SMB uploads) or a case-insensitive SQL comparison would not tell apart:

1. Unicode NFKC compatibility forms (full-width ``ＡＣＭＥ`` is ``ACME``),
2. the ASCII look-alikes ``I``/``1``/``|`` -> ``l`` and ``0`` -> ``o`` (mapped before case folding,
   so a capital ``I`` and a small ``l`` collide but ``i`` and ``l`` do not),
3. letter case (``str.casefold``),
4. the letter pairs ``rn`` -> ``m`` and ``vv`` -> ``w``,
5. separators: runs of ``-``, ``_``, ``.`` and spaces are one ``-``, and leading or trailing ones are
   dropped (Windows drops trailing dots: ``acme.`` is ``acme`` there).

So ``ACME``, ``acme.``, ``Acme_``, ``acrne`` and ``acme`` are one tenant; :func:`identity_clashes` says
which of several folder names must be refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARTITION_SEP = "|"
_LOOKALIKES = str.maketrans({"I": "l", "1": "l", "|": "l", "0": "o"})
_SEPARATORS = re.compile(r"[-_.\s]+")


def validate_name(value: str, kind: str = "name") -> str:
    """Return ``value`` if it is a safe name, else raise ValueError saying what is allowed."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value:
        detail = ""
        if isinstance(value, str):
            odd = next(((i, c) for i, c in enumerate(value) if not c.isascii()), None)
            if odd is not None:
                i, c = odd
                detail = (f" (character {c!r}, U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}, at position {i} "
                          "is not ASCII: a look-alike of another name is never accepted)")
        raise ValueError(
            f"invalid {kind} {value!r}{detail}: use 1-64 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (no '..', '/', spaces, quotes or SQL metacharacters)"
        )
    return value


def tenant_identity(name: str) -> str:
    """What a tenant name normalises to (see the module docstring); equal identity = same tenant."""
    folded = unicodedata.normalize("NFKC", name).translate(_LOOKALIKES).casefold()
    folded = folded.replace("rn", "m").replace("vv", "w")
    return _SEPARATORS.sub("-", folded).strip("-")


def identity_clashes(names: Iterable[str], known: Iterable[str] = ()) -> dict[str, str]:
    """The tenant folder names among ``names`` that must be refused, each with the reason.

    ``known`` are tenants that already have data (their raw zone exists). When names share one
    identity, the single known one among them keeps working and every other is refused; when none
    (or more than one) is known, all of them are refused: which one is the real tenant is for a
    person to decide, never for a folder listing.
    """
    names, known = set(names), set(known)
    groups: dict[str, set[str]] = defaultdict(set)
    for name in names | known:
        groups[tenant_identity(name)].add(name)
    refused: dict[str, str] = {}
    for identity, members in groups.items():
        if len(members) < 2:
            continue
        established = members & known
        keeper = next(iter(established)) if len(established) == 1 else None
        for name in sorted(members & names - {keeper}):
            others = ", ".join(repr(m) for m in sorted(members - {name}))
            why = (f"tenant {keeper!r} already has data" if keeper
                   else "none of them has data yet, so all are refused until the folders are renamed")
            refused[name] = (
                f"tenant folder {name!r} refused: it normalises to {identity!r} like {others} (names that differ "
                f"only in case, separators, trailing dots or look-alike characters are one tenant; {why})"
            )
    return refused


def partition_key(tenant: str, study: str) -> str:
    """Dagster partition key of a tenant/study: ``"acme|ACME-001"``."""
    return f"{validate_name(tenant, 'tenant')}{PARTITION_SEP}{validate_name(study, 'study')}"


def split_partition_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`partition_key`, validating both parts."""
    tenant, sep, study = key.partition(PARTITION_SEP)
    if not sep:
        raise ValueError(f"invalid partition key {key!r}: expected 'tenant{PARTITION_SEP}study'")
    return validate_name(tenant, "tenant"), validate_name(study, "study")
