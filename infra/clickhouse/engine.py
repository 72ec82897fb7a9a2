"""One chDB session with the per-request semantics of ClickHouse's HTTP interface (local stand-in:
see the package docstring).

A request carries a statement (plus, for ``INSERT ... FORMAT X``, the data after it), a database,
settings and bind parameters. chDB's session is stateful and not thread-safe, so every request runs
under one lock: ``USE`` its database, ``SET`` its settings, run, then put the settings back.
Differences from a real server: all clients share one session (a ``SET`` sent as a statement lasts
until changed; ``session_id`` is accepted and ignored), several statements in one request are
allowed, and ``file()`` can read any path the process can (the endpoint binds 127.0.0.1 only).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import chdb.session

DEFAULT_FORMAT = "TabSeparated"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORMAT_NAME = rb"[A-Za-z][A-Za-z0-9_]*"
# INSERT whose data follows the statement: "INSERT INTO db.t (a, b) FORMAT Native\n<data>".
_INSERT_WITH_DATA = re.compile(rb"\A\s*INSERT\s+INTO\s+(?P<target>[^;]+?)\s+FORMAT\s+(?P<fmt>" + _FORMAT_NAME + rb")",
                               re.IGNORECASE | re.DOTALL)
_INLINE_ROWS = re.compile(rb"\b(VALUES|SELECT|WITH)\b", re.IGNORECASE)
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(" + _FORMAT_NAME.decode() + r")\s*;?\s*\Z", re.IGNORECASE)
_RESULT_STATEMENTS = re.compile(r"(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN|CHECK|\()", re.IGNORECASE)
_CODE = re.compile(r"Code: (\d+)\.")
# Longest statement text searched for "INSERT ... FORMAT" before the binary data begins.
_INSERT_HEADER_BYTES = 1 << 16


class ClickHouseError(Exception):
    """An error in ClickHouse's own form: ``Code: N. DB::Exception: message (NAME)``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def of(cls, code: int, name: str, text: str) -> ClickHouseError:
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})")


@dataclass
class Request:
    """One HTTP request's query.

    ``statement``: SQL text (URL ``query`` parameter and/or body); when ``data`` is None and the
    statement is ``INSERT ... FORMAT X``, the bytes after the format name are the rows.
    ``data``: insert rows sent in the body while the statement came in the URL.
    """

    statement: bytes
    data: bytes | None = None
    database: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    default_format: str = DEFAULT_FORMAT


@dataclass
class Result:
    body: bytes
    fmt: str | None  # output format when the statement returns a result set (X-ClickHouse-Format)
    summary: dict[str, str]


class ChdbEngine:
    """The chDB session (``path``: its data folder) serving every request, one at a time."""

    def __init__(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self._session = chdb.session.Session(str(path))
        self._lock = threading.Lock()
        version, timezone = self._session.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split()
        self.version, self.timezone = version, timezone

    def close(self) -> None:
        with self._lock:
            self._session.close()

    def execute(self, request: Request) -> Result:
        """Run one request; raises ClickHouseError."""
        sql, data, insert_fmt = _split_insert(request)
        with self._lock:
            self._query(f"USE {_identifier(request.database or 'default')}")
            with self._settings(request.settings):
                if insert_fmt is None:
                    text = _decode(sql)
                    result = self._query(text, request.default_format, request.params)
                    fmt = _output_format(text, request.default_format)
                    return Result(result.bytes(), fmt, _summary(result))
                with _spooled(data or b"") as path:
                    result = self._query(f"INSERT INTO {_decode(sql)} FROM INFILE '{path}' FORMAT {insert_fmt}")
                return Result(b"", None, _summary(result))

    def _query(self, sql: str, fmt: str = DEFAULT_FORMAT, params: Mapping[str, str] | None = None):
        try:
            return self._session.query(sql, fmt, params=dict(params)) if params else self._session.query(sql, fmt)
        except Exception as exc:  # chDB raises its own error type carrying ClickHouse's message
            text = str(exc).strip()
            found = _CODE.search(text)
            if found:
                raise ClickHouseError(int(found.group(1)), text) from exc
            raise ClickHouseError.of(1001, "STD_EXCEPTION", text) from exc

    @contextmanager
    def _settings(self, settings: Mapping[str, str]) -> Iterator[None]:
        """SET the request's settings for one statement, then restore what the session had."""
        if not settings:
            yield
            return
        for name in settings:
            if not _NAME.match(name):
                raise ClickHouseError.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        names = ", ".join(_literal(n) for n in settings)
        rows = self._query(f"SELECT name, value FROM system.settings WHERE changed AND name IN ({names})",
                           "TabSeparatedRaw").bytes().decode()
        before = dict(line.split("\t", 1) for line in rows.splitlines() if line)
        try:
            for name, value in settings.items():
                self._query(f"SET {name} = {_literal(value)}")
            yield
        finally:
            for name in settings:
                self._query(f"SET {name} = {_literal(before[name]) if name in before else 'DEFAULT'}")


def _split_insert(request: Request) -> tuple[bytes, bytes | None, str | None]:
    """(statement, insert data, insert format); the format is None for anything but INSERT ... FORMAT."""
    found = _INSERT_WITH_DATA.match(request.statement[:_INSERT_HEADER_BYTES])
    # "INSERT INTO t VALUES ('... FORMAT x')" is plain SQL (quoted identifiers may say `values`).
    if found is None or _INLINE_ROWS.search(re.sub(rb"`[^`]*`", b"", found.group("target"))):
        # Like ClickHouse: a body continues the URL's query (e.g. "INSERT INTO t VALUES" + rows).
        return request.statement + (b"\n" + request.data if request.data is not None else b""), None, None
    if request.data is not None:
        rest, data = request.statement[found.end():], request.data
        if rest.strip(b" \t\r\n;"):
            raise ClickHouseError.of(62, "SYNTAX_ERROR", "unexpected text after the INSERT's FORMAT name in the query parameter")
    else:
        data = request.statement[found.end():]
        # The data begins after one whitespace character (binary Native data may begin with 0x0a itself).
        data = data[1:] if data[:1] in (b"\n", b" ", b"\t", b"\r") else data
    return found.group("target"), data, found.group("fmt").decode()


@contextmanager
def _spooled(data: bytes) -> Iterator[str]:
    """A temporary file holding ``data`` (chDB cannot take insert rows as stdin; it reads a file)."""
    fd, path = tempfile.mkstemp(prefix="chdb-insert-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield path
    finally:
        os.unlink(path)


def _output_format(sql: str, default_format: str) -> str | None:
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    if not _RESULT_STATEMENTS.match(body):
        return None
    found = _TRAILING_FORMAT.search(body)
    return found.group(1) if found else default_format


def _summary(result) -> dict[str, str]:
    return {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written()),
            "total_rows_to_read": str(result.rows_read()), "elapsed_ns": str(int(result.elapsed() * 1e9))}


def _decode(sql: bytes) -> str:
    try:
        return sql.decode()
    except UnicodeDecodeError as exc:
        raise ClickHouseError.of(62, "SYNTAX_ERROR", f"the query is not valid UTF-8 ({exc})") from exc


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
