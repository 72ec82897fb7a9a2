"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

A problem names what is wrong: ``type`` (a relative URI ``/problems/<slug>``), ``title``, ``status``,
``detail`` and, for bad input, ``errors``: one ``{"field", "pointer", "detail"}`` per wrong field
(``field`` as ``body.effect`` / ``header.Idempotency-Key`` / ``query.status``, ``pointer`` a JSON
pointer into the body where there is one).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("trialsynth.api")
IDEMPOTENCY_HEADER = "Idempotency-Key"


class ProblemError(StarletteHTTPException):
    """Raise to answer with a problem document. ``headers`` e.g. Retry-After, WWW-Authenticate.

    An HTTPException, so that FastAPI lets it through while it reads a body (the size limit)."""

    def __init__(self, status: int, slug: str, title: str, detail: str, *, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status, detail, headers or {})
        self.status, self.slug, self.title = status, slug, title
        self.errors, self.extra = errors, extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc = {"type": f"/problems/{self.slug}", "title": self.title, "status": self.status, "detail": self.detail}
        if instance:
            doc["instance"] = instance
        if self.errors:
            doc["errors"] = self.errors
        return doc | self.extra

    def response(self, instance: str | None = None) -> Response:
        return Response(json.dumps(self.body(instance)), status_code=self.status, media_type=PROBLEM_JSON,
                        headers=self.headers)


def field_error(field: str, detail: str) -> dict[str, str]:
    """One entry of ``errors``: ``body.a.0.b`` -> pointer ``/a/0/b``."""
    where, _, rest = field.partition(".")
    entry = {"field": field, "detail": detail}
    if where == "body":
        entry["pointer"] = "/" + rest.replace(".", "/") if rest else ""
    return entry


def invalid(field: str, detail: str, status: int = 422) -> ProblemError:
    """A request whose ``field`` is wrong (422 unless said otherwise)."""
    return ProblemError(status, "invalid-request", "Invalid request", f"{field}: {detail}",
                        errors=[field_error(field, detail)])


def not_found(what: str, ident: str) -> ProblemError:
    """The same answer whether ``ident`` does not exist or belongs to another tenant."""
    return ProblemError(404, "not-found", "Not found", f"no {what} {ident!r} for this tenant")


def unavailable(detail: str, retry_after: int) -> ProblemError:
    return ProblemError(503, "service-unavailable", "Service unavailable", detail,
                        headers={"Retry-After": str(max(1, int(retry_after)))})


def _loc(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "header" and len(parts) > 1:
        parts[1] = "-".join(w.capitalize() for w in parts[1].replace("_", "-").split("-"))
    return ".".join(parts)


def _message(error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ")
    return msg.partition(": ")[2] if _named_field(error) else msg


def _named_field(error: dict) -> str:
    """``.effect`` for a model-level ``Value error, effect: ...`` (the validator names the field first)."""
    msg = error["msg"].removeprefix("Value error, ")
    name, sep, _ = msg.partition(":")
    return f".{name}" if error["type"] == "value_error" and sep and name.isidentifier() else ""


async def validation_handler(request: Request, exc: RequestValidationError) -> Response:
    """422 naming every wrong field; a missing Idempotency-Key is a 400 of its own (IETF httpapi draft)."""
    errors = exc.errors()
    if any([str(p).lower() for p in e["loc"][:2]] == ["header", IDEMPOTENCY_HEADER.lower()] for e in errors):
        detail = f"this POST needs an {IDEMPOTENCY_HEADER} header (1-255 characters, unique per request)"
        return ProblemError(400, "idempotency-key-missing", "Idempotency-Key missing", detail,
                            errors=[field_error(f"header.{IDEMPOTENCY_HEADER}", detail)]).response(request.url.path)
    found = [field_error(_loc(e["loc"]) + _named_field(e), _message(e)) for e in errors]
    detail = "; ".join(f"{e['field']}: {e['detail']}" for e in found)
    return ProblemError(422, "invalid-request", "Invalid request", detail, errors=found).response(request.url.path)


async def problem_handler(request: Request, exc: ProblemError) -> Response:
    return exc.response(request.url.path)


async def http_handler(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors (404 route, 405 method) as problems too."""
    headers = dict(exc.headers or {})
    return ProblemError(exc.status_code, "http-error", str(exc.detail), str(exc.detail),
                        headers=headers).response(request.url.path)


def too_large(limit: int) -> ProblemError:
    return ProblemError(413, "payload-too-large", "Payload too large",
                        f"the request body is larger than the limit of {limit} bytes")


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged with its traceback, answered as a 500 problem without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return ProblemError(500, "internal-error", "Internal server error",
                        "the request failed on the server; the trace id in X-Trace-Id identifies it").response(
                            request.url.path)
