"""Lake paths that cannot leave the tenant's prefix.

Every zone keeps one folder per tenant (``<landing>/<tenant>/``, ``<raw>/<tenant>/``,
``<lake>/<tenant>/``). :func:`tenant_path` resolves a path the way the operating system will open it
(``..`` and symlinks followed) and refuses it unless it lies under the tenant's folder of one of the
given zones, so a job of tenant A handed a path of tenant B (absolute, ``../beta/...``, or a symlink
planted in A's folder that points into B's) fails before it reads or writes a byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trialsynth.names import validate_name


class TenantPathError(PermissionError):
    """A path outside the tenant's prefix."""


def tenant_path(roots: Path | Iterable[Path], tenant: str, path: str | Path) -> Path:
    """``path`` resolved, if it lies under ``<root>/<tenant>/`` for one of ``roots``; else TenantPathError.

    A relative ``path`` is taken relative to the first root. The tenant folder itself counts as inside.
    """
    tenant = validate_name(tenant, "tenant")
    roots = [Path(roots)] if isinstance(roots, str | Path) else [Path(r) for r in roots]
    if not roots:
        raise ValueError("roots must name at least one zone folder")
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else roots[0] / candidate).resolve()
    prefixes = [(root / tenant).resolve() for root in roots]
    if any(resolved == p or resolved.is_relative_to(p) for p in prefixes):
        return resolved
    raise TenantPathError(
        f"path {path} resolves to {resolved}, outside tenant {tenant!r}'s folders "
        f"({', '.join(str(p) for p in prefixes)}): a job of one tenant never reads or writes another tenant's files")
