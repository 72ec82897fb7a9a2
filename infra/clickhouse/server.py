"""The HTTP side of the local ClickHouse stand-in (see the package docstring): ClickHouse's HTTP
interface as clickhouse-connect and dbt-clickhouse use it, on 127.0.0.1 only.

- ``GET/POST /?query=...`` or the statement in the POST body (the body continues a URL query);
  multipart/form-data with a ``query`` field; ``param_<name>`` bind parameters;
- ``database``, ``default_format`` and any ClickHouse setting as URL parameters (``session_id``,
  ``query_id`` and the other transport parameters are accepted);
- results in the requested format (``FORMAT X`` in the query wins), Native included;
- ``INSERT ... FORMAT X`` with the rows after it, chunked or not, gzip/deflate/zstd/lz4 encoded;
- errors as ``Code: N. DB::Exception: ...`` with status 500 and ``X-ClickHouse-Exception-Code``
  (401 for a wrong password); ``/ping`` answers ``Ok.``.
"""

from __future__ import annotations

import base64
import gzip
import json
import sys
import uuid
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from infra.clickhouse.engine import DEFAULT_FORMAT, ChdbEngine, ClickHouseError, Request

HOST = "127.0.0.1"
# URL parameters that belong to the HTTP transport, not to ClickHouse settings.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "user", "password", "quota_key", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "client_protocol_version", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_native_compression_disable_checksumming_on_decompress",
})


class EndpointServer(ThreadingHTTPServer):
    """Serves one ChdbEngine; ``user``/``password``: the one account it accepts (no password: any)."""

    daemon_threads = True

    def __init__(self, engine: ChdbEngine, port: int = 0, user: str = "default", password: str = "") -> None:
        super().__init__((HOST, port), _Handler)
        self.engine, self.user, self.password = engine, user, password


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EndpointServer

    def do_GET(self) -> None:
        self._handle(None)

    def do_POST(self) -> None:
        try:
            body = _decompress(self._read_body(), self.headers.get("Content-Encoding"))
        except ClickHouseError as exc:
            self._error(exc, 500)
            return
        self._handle(body)

    def log_message(self, format: str, *args) -> None:
        pass  # errors are logged in _error; one line per request would drown the log

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, body: bytes | None) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and not url.query and not body):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if url.path != "/":
            self._error(ClickHouseError.of(48, "NOT_IMPLEMENTED", f"no handler for {url.path} in this stand-in"), 404)
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            if "multipart/form-data" in self.headers.get("Content-Type", ""):
                params.update(_form_fields(self.headers.get("Content-Type", ""), body or b""))
                body = None
            if not self._authorized(params):
                self._error(ClickHouseError.of(516, "AUTHENTICATION_FAILED", f"{self._credentials(params)[0]}: Authentication failed: password is incorrect, or there is no user with such name"), 401)
                return
            request = _request(params, body)
            result = self.server.engine.execute(request)
        except ClickHouseError as exc:
            self._error(exc, 500)
            return
        headers = {"Content-Type": _content_type(result.fmt), "X-ClickHouse-Summary": json.dumps(result.summary),
                   "X-ClickHouse-Timezone": self.server.engine.timezone,
                   "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
                   "X-ClickHouse-Server-Display-Name": "chdb-stand-in"}
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        self._send(200, result.body, headers)

    def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode(errors="replace").partition(":")
            return user, password
        return (self.headers.get("X-ClickHouse-User") or params.get("user") or "default",
                self.headers.get("X-ClickHouse-Key") or params.get("password") or "")

    def _authorized(self, params: dict[str, str]) -> bool:
        if not self.server.password:
            return True
        return self._credentials(params) == (self.server.user, self.server.password)

    def _error(self, exc: ClickHouseError, status: int) -> None:
        print(f"{self.command} {urlsplit(self.path).path} -> {status}: {exc}", file=sys.stderr, flush=True)
        self._send(status, f"{exc} (version {self.server.engine.version})\n".encode(),
                   {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(exc.code)})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _request(params: dict[str, str], body: bytes | None) -> Request:
    query = params.get("query", "").encode()
    if not query and not body:
        raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query")
    statement, data = (query, body or None) if query else (body, None)
    return Request(
        statement=statement, data=data, database=params.get("database") or None,
        settings={k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")},
        params={k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")},
        default_format=params.get("default_format") or DEFAULT_FORMAT)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        if part.get_filename():
            raise ClickHouseError.of(48, "NOT_IMPLEMENTED", "external data (file parts) is not supported by this stand-in")
        fields[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True).decode()
    return fields


def _decompress(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
        if encoding == "lz4":
            import lz4.frame

            return lz4.frame.decompress(body)
    except Exception as exc:  # each codec raises its own error type on corrupt input
        raise ClickHouseError.of(271, "CANNOT_DECOMPRESS", f"cannot decode {encoding} body: {exc}") from exc
    raise ClickHouseError.of(48, "NOT_IMPLEMENTED", f"Content-Encoding {encoding} is not supported by this stand-in")


def _content_type(fmt: str | None) -> str:
    if fmt and fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt in (None, "TabSeparated", "TSV", "TabSeparatedRaw", "TabSeparatedWithNames", "TabSeparatedWithNamesAndTypes"):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt in ("CSV", "CSVWithNames"):
        return "text/csv; charset=UTF-8"
    return "application/octet-stream"
