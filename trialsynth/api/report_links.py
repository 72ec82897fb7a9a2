"""Links from Dagster's asset pages to evidence reports, served by the API over HTTP.

A browser following a link from the Dagster UI carries no API token (and browsers refuse ``file://``
links from web pages), so the link carries its own authorization: an HMAC-SHA256 over the report's
tenant, study and run id, checked by ``GET /evidence/v1/reports/{tenant}/{study}/{run_id}?sig=...``
(:mod:`trialsynth.api.routers.evidence`). A link opens that one report and nothing else: whoever can
read the Dagster run's metadata can read its report, as they could read the report file itself.

The key: ``$TRIALSYNTH_REPORT_LINK_SECRET`` when set (the API and the Dagster runs need the same
value; in Kubernetes, from one Secret), else, for the embedded default only, a key derived from the
API's HS256 secret (its env var or key file, which ``trialsynth api`` and the local Dagster share).
Without either, no link is made and the asset's metadata says how to open the report instead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from urllib.parse import quote

from trialsynth.settings import Settings

LINK_SECRET_ENV = "TRIALSYNTH_REPORT_LINK_SECRET"
ROUTE = "/evidence/v1/reports/{tenant}/{study}/{run_id}"
_DERIVATION = b"trialsynth evidence report links v1"


def link_key(settings: Settings) -> bytes | None:
    """The key report links are signed with, or None when this deployment has none."""
    value = os.environ.get(LINK_SECRET_ENV)
    if value:
        return value.encode()
    from trialsynth.api.auth import hs256_secret, is_embedded

    if settings.api.jwt_algorithm == "HS256" and is_embedded(settings):
        return hmac.new(hs256_secret(settings), _DERIVATION, hashlib.sha256).digest()
    return None


def report_signature(key: bytes, tenant: str, study: str, run_id: str) -> str:
    """Hex HMAC-SHA256 of ``tenant/study/run_id`` (names are validated before they are signed)."""
    return hmac.new(key, f"{tenant}/{study}/{run_id}".encode(), hashlib.sha256).hexdigest()


def report_link(settings: Settings, tenant: str, study: str, run_id: str) -> str | None:
    """The URL of the HTML report of evidence run ``run_id``, or None without a link key."""
    key = link_key(settings)
    if key is None:
        return None
    path = ROUTE.format(tenant=quote(tenant), study=quote(study), run_id=quote(run_id))
    return f"{settings.api.public_url.rstrip('/')}{path}?sig={report_signature(key, tenant, study, run_id)}"


def signature_is_valid(settings: Settings, tenant: str, study: str, run_id: str, sig: str) -> bool:
    key = link_key(settings)
    return key is not None and hmac.compare_digest(report_signature(key, tenant, study, run_id), sig)
