"""The ClickHouse warehouse behind one Airflow connection, ``clickhouse_default``.

The connection decides where the SQL runs; the SQL, the results and the code above the
hook are the same:

* a ClickHouse server over the native protocol (clickhouse-driver): host, port, login,
  password, schema (the connection's default database) and the extras of ``SERVER_EXTRAS``;
* the embedded engine (chdb) when the extra names a data directory: ``{"chdb_path": "..."}``.

Query parameters are bound by the engine in both cases (``{name:Type}``), so a value never
becomes SQL text; the embedded engine receives them exactly as the driver sends them to a
server. Results come back as the driver decodes them on both backends (int, str, datetime,
UUID, Decimal, list, bool): the embedded engine answers in ClickHouse's Native format and the
driver's own column readers decode it.

Source objects reach the engine by the shortest way each backend has. A server reads the
object from the bucket itself (``s3()``, the archive member by ``'<url> :: <member>'``) with
the credentials the operator gave the server: the worker parses nothing and sends no rows.
The embedded engine reads the member from a local spool. Either way the engine parses, under
the settings of ``records.ENGINE_SETTINGS``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from clickstream import records, sql
from clickstream.config import SQL_DIR, SourceTable
from clickstream.source import FetchedObject, SourceBucket

log = logging.getLogger(__name__)

Params = Mapping[str, Any]
# Columns every loads table starts with, before the source table's own columns.
LOAD_METADATA_COLUMNS = (
    ("window_start", "DateTime('UTC')"),
    ("load_id", "UUID"),
    ("source_key", "String"),
    ("source_etag", "String"),
    ("loaded_at", "DateTime64(6, 'UTC')"),
)

# Extras of a server connection, with their defaults (documented in the README).
SERVER_EXTRAS: dict[str, Any] = {
    "secure": False,
    "verify": True,
    "ca_certs": None,
    "connect_timeout": 10,
    "send_receive_timeout": 300,
    "sync_request_timeout": 5,
    "compression": False,
    "tcp_keepalive": [60, 10, 6],
    "settings": {},
    "client_name": "clickstream",
    "s3_endpoint_url": None,
}
COMPRESSION_METHODS = ("lz4", "lz4hc", "zstd")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_USE = re.compile(r"^USE\s+\{(\w+):Identifier\}$", re.IGNORECASE)
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A parameter value no type can parse (an unescaped tab): the embedded engine keeps bound
# values for the session, so a value a statement no longer binds is overwritten with it.
_UNBOUND = "'\t'"


class ConnectionConfigError(ValueError):
    """An extra of the warehouse connection is unknown or holds a value it cannot take."""


class WarehouseConnectionUndefined(AirflowFailException):
    """The configured warehouse connection does not exist: the task fails without retries."""


def parse_bool(value: Any, name: str) -> bool:
    """Return ``value`` as a boolean; strings as a URI-form connection gives them are parsed.

    :raises ConnectionConfigError: not a boolean nor one of true/false, 1/0, yes/no, on/off.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConnectionConfigError(f"connection extra {name!r} is {value!r}; expected true or false")


def _parse_seconds(value: Any, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds <= 0:
        raise ConnectionConfigError(f"connection extra {name!r} is {value!r}; expected seconds > 0")
    return seconds


def _parse_compression(value: Any) -> bool | str:
    if isinstance(value, str) and value.strip().lower() in COMPRESSION_METHODS:
        return value.strip().lower()
    try:
        return "lz4" if parse_bool(value, "compression") else False
    except ConnectionConfigError:
        raise ConnectionConfigError(
            f"connection extra 'compression' is {value!r}; expected false, true (lz4) or one of "
            f"{', '.join(COMPRESSION_METHODS)}"
        ) from None


def _parse_keepalive(value: Any) -> bool | tuple[int, int, int]:
    if isinstance(value, str) and value.strip().startswith("["):
        value = json.loads(value)
    if isinstance(value, list | tuple):
        if len(value) != 3 or not all(str(part).isdigit() and int(part) > 0 for part in value):
            raise ConnectionConfigError(
                f"connection extra 'tcp_keepalive' is {value!r}; expected true, false or "
                "[idle seconds, interval seconds, probes]"
            )
        return tuple(int(part) for part in value)
    return parse_bool(value, "tcp_keepalive")


def _parse_settings(value: Any) -> dict:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    if not isinstance(value, dict):
        raise ConnectionConfigError(f"connection extra 'settings' is {value!r}; expected a JSON object")
    return dict(value)


def client_options(connection) -> dict[str, Any]:
    """Return the clickhouse-driver ``Client`` options of an Airflow connection.

    :raises ConnectionConfigError: an unknown extra, or a value of the wrong kind.
    """
    extra = dict(connection.extra_dejson)
    unknown = sorted(set(extra) - set(SERVER_EXTRAS))
    if unknown:
        raise ConnectionConfigError(
            f"connection {connection.conn_id!r} has unknown extra(s) {', '.join(unknown)}; "
            f"known: {', '.join(SERVER_EXTRAS)}"
        )
    extra = {**SERVER_EXTRAS, **extra}
    secure = parse_bool(extra["secure"], "secure")
    options = {
        "host": connection.host or "localhost",
        "port": int(connection.port or (9440 if secure else 9000)),
        "user": connection.login or "default",
        "password": connection.password or "",
        "database": connection.schema or "default",
        "secure": secure,
        "verify": parse_bool(extra["verify"], "verify"),
        "connect_timeout": _parse_seconds(extra["connect_timeout"], "connect_timeout"),
        "send_receive_timeout": _parse_seconds(extra["send_receive_timeout"], "send_receive_timeout"),
        "sync_request_timeout": _parse_seconds(extra["sync_request_timeout"], "sync_request_timeout"),
        "compression": _parse_compression(extra["compression"]),
        "tcp_keepalive": _parse_keepalive(extra["tcp_keepalive"]),
        "client_name": str(extra["client_name"]),
        # Values are bound by the server, never pasted into the text by the driver.
        "settings": {**_parse_settings(extra["settings"]), "server_side_params": True},
        # A server skips an unknown setting that is not flagged important, with a warning in
        # its own log only: the input contract and the operator's settings would then be
        # dropped silently. Flagged, an unknown or misspelled one fails the statement at once.
        "settings_is_important": True,
    }
    if extra["ca_certs"]:
        options["ca_certs"] = extra["ca_certs"]
    return options


def render_use(statement: str, params: Params) -> str:
    """Return ``USE {name:Identifier}`` with the database name in the text, other statements as they are.

    clickhouse-driver remembers the text after ``USE`` as the connection's database and
    reconnects with it after an error: it must be a name, never a placeholder. The name comes
    from the validated config and must be a plain identifier.
    """
    match = _USE.match(statement.strip())
    if not match:
        return statement
    database = params.get(match.group(1), "")
    if not isinstance(database, str) or not _PLAIN_IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return f"USE {database}"


@dataclass
class StagedObject:
    """A source object ready for the engine: its version, and where the engine reads it.

    ``url`` is where a server reads the member (``'<object URL> :: <member>'``); the object
    spooled on local disk (``local_copy()``) is what the embedded engine reads and what the
    integrity check and the reference reader read after a rejection. A server backend
    fetches it only then.
    """

    bucket: str
    key: str
    member: str
    etag: str
    size_bytes: int
    url: str = ""
    _fetch: Any = field(default=None, repr=False)
    _local: FetchedObject | None = field(default=None, repr=False)

    def local_copy(self) -> FetchedObject:
        """Return the object spooled on local disk, its member unwrapped; fetched on first use."""
        if self._local is None:
            self._local = self._fetch()
        return self._local

    def local_member(self) -> Path:
        """Return the member on local disk (gzip or plain JSON lines), fetching it on first use."""
        return self.local_copy().member_path


class _DriverResults:
    """Decodes ClickHouse's Native format with clickhouse-driver's own column readers."""

    def __init__(self):
        from clickhouse_driver.connection import ServerInfo
        from clickhouse_driver.context import Context

        self.context = Context()
        # Revision 0: the Native *format* has no block info and no serialization flags.
        self.context.server_info = ServerInfo("chdb", 0, 0, 0, 0, "UTC", "", 0)
        self.context.settings = {}
        self.context.client_settings = {
            "strings_as_bytes": False,
            "strings_encoding": "utf-8",
            "use_numpy": False,
            "input_format_null_as_default": False,
            "namedtuple_as_json": True,
            "server_side_params": True,
            "quota_key": "",
            "opentelemetry_traceparent": None,
            "opentelemetry_tracestate": "",
            "insert_block_size": 1048576,
        }

    def rows(self, data: bytes) -> list[list]:
        from clickhouse_driver.bufferedreader import CompressedBufferedReader
        from clickhouse_driver.streams.native import BlockInputStream

        if not data:
            return []
        chunks = [data]
        reader = CompressedBufferedReader(lambda: chunks.pop() if chunks else b"", len(data))
        stream = BlockInputStream(reader, self.context)
        rows: list[list] = []
        while True:
            rows.extend(list(row) for row in stream.read().get_rows())
            if not chunks and reader.position >= reader.current_buffer_size:
                return rows

    def literal(self, value: Any) -> str:
        """Return ``value`` as the driver sends a server-side parameter (a quoted, escaped literal)."""
        from clickhouse_driver.util.escape import escape_param

        return escape_param(value, self.context, for_server=True)


class _EmbeddedBackend:
    """chdb in this process: one data directory per process, held until ``close``."""

    def __init__(self, path: str):
        from chdb import session

        Path(path).mkdir(parents=True, exist_ok=True)
        self._session = session.Session(path)
        # Bound values travel in the text of a SET here, not beside the query as the driver
        # sends them: lift the text limit so a long value binds as it would on a server.
        self._session.query("SET max_query_size = 1073741824")
        self._results = _DriverResults()
        self._bound: set[str] = set()
        self.path = path

    def execute(self, statement: str, params: Params, settings: Params | None = None) -> list[list]:
        # chdb 3.7 takes query parameters as session settings (SET param_<name>): values are
        # the literals the driver sends a server, and values of earlier statements are
        # overwritten with an unparseable one, so a statement never binds a stale value.
        statement = render_use(statement, params)
        assignments = [f"param_{name} = {self._results.literal(value)}" for name, value in params.items()]
        assignments += [f"param_{name} = {_UNBOUND}" for name in self._bound - set(params)]
        assignments += [
            f"{name} = {self._results.literal(value)}" for name, value in (settings or {}).items()
        ]
        if assignments:
            self._session.query("SET " + ", ".join(assignments))
        self._bound = set(params)
        try:
            result = self._session.query(statement, "Native")
        finally:
            # Settings hold for this statement only, as a server applies a query's settings.
            if settings:
                self._session.query("SET " + ", ".join(f"{name} = DEFAULT" for name in settings))
        return self._results.rows(result.bytes() if result is not None else b"")

    @contextmanager
    def stage(self, bucket: SourceBucket, key: str, member: str) -> Iterator[StagedObject]:
        with bucket.fetch_member(key, member) as fetched:
            yield StagedObject(bucket.bucket, key, member, fetched.etag, fetched.size_bytes, _local=fetched)

    def load(self, target: Params, table: SourceTable, source: StagedObject, metadata: Params) -> None:
        _read_lines(self, "file", {"path": str(source.local_member())}, target, table, metadata)

    def close(self) -> None:
        self._session.close()


class _ServerBackend:
    """A ClickHouse server over the native protocol."""

    def __init__(self, connection):
        from clickhouse_driver import Client

        self.options = client_options(connection)
        self.s3_endpoint_url = connection.extra_dejson.get("s3_endpoint_url") or None
        self._client = Client(**self.options)

    def execute(self, statement: str, params: Params, settings: Params | None = None) -> list[list]:
        statement = render_use(statement, params)
        rows = self._client.execute(statement, dict(params), settings=dict(settings or {}) or None)
        return [list(row) for row in rows]

    @contextmanager
    def stage(self, bucket: SourceBucket, key: str, member: str) -> Iterator[StagedObject]:
        # The server reads the object; the worker only learns its version, and downloads it
        # only if the server rejects it, for the reference reader to name the line.
        if set("*?{}") & set(key):
            raise ValueError(f"s3://{bucket.bucket}/{key}: a key with glob characters cannot be read by s3()")
        version = bucket.version(key)
        with ExitStack() as downloads:

            def fetch() -> FetchedObject:
                return downloads.enter_context(bucket.fetch_member(key, member))

            yield StagedObject(
                bucket.bucket,
                key,
                member,
                version.etag,
                version.size_bytes,
                url=f"{bucket.object_url(key, self.s3_endpoint_url)} :: {member}",
                _fetch=fetch,
            )

    def load(self, target: Params, table: SourceTable, source: StagedObject, metadata: Params) -> None:
        _read_lines(self, "s3", {"url": source.url}, target, table, metadata)

    def close(self) -> None:
        self._client.disconnect()


def _read_lines(
    backend: _EmbeddedBackend | _ServerBackend,
    source: str,
    location: Params,
    target: Params,
    table: SourceTable,
    metadata: Params,
) -> None:
    """Append the lines at ``location`` (a ``file()`` path or an ``s3()`` URL) to the loads table,
    checked against the input contract first when the read takes numbers as written."""
    read = records.engine_read(table)
    if read.contract_structure is not None:
        backend.execute(
            sql.statement(f"select_checked_lines_from_{source}"),
            {**location, "structure": read.contract_structure},
            records.ENGINE_SETTINGS,
        )
    backend.execute(
        sql.statement(f"insert_loads_from_{source}"),
        {**target, **metadata, **location, "structure": read.structure, "row_type": read.row_type},
        read.settings,
    )


class ClickHouseHook(BaseHook):
    """Run the project's SQL files on the warehouse named by an Airflow connection.

    :param clickhouse_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "clickhouse_conn_id"
    default_conn_name = "clickhouse_default"
    conn_type = "clickhouse"
    hook_name = "ClickHouse"

    def __init__(self, clickhouse_conn_id: str = default_conn_name):
        super().__init__()
        if not isinstance(clickhouse_conn_id, str) or not clickhouse_conn_id:
            raise TypeError(f"clickhouse_conn_id must be a non-empty string, got {clickhouse_conn_id!r}")
        self.clickhouse_conn_id = clickhouse_conn_id

    @cached_property
    def connection(self):
        try:
            return self.get_connection(self.clickhouse_conn_id)
        except AirflowNotFoundException as error:
            raise WarehouseConnectionUndefined(
                f"the Airflow connection {self.clickhouse_conn_id!r} of the warehouse (warehouse.conn_id) "
                f"is not defined: {error}"
            ) from None

    @cached_property
    def marts_snapshot_dir(self) -> Path | None:
        """Where this warehouse publishes a copy of the marts after each change, for readers
        in other processes: the connection's ``marts_snapshot_dir`` extra, or None.

        The embedded engine lets one process open its data at a time, so the local stack's
        dashboards read this copy; a server's readers query the server itself.
        """
        directory = self.connection.extra_dejson.get("marts_snapshot_dir")
        return Path(directory) if directory else None

    @cached_property
    def backend(self) -> _EmbeddedBackend | _ServerBackend:
        connection = self.connection
        chdb_path = connection.extra_dejson.get("chdb_path")
        if chdb_path:
            log.info("Warehouse %s: embedded chdb at %s", self.clickhouse_conn_id, chdb_path)
            return _EmbeddedBackend(chdb_path)
        log.info("Warehouse %s: server %s:%s", self.clickhouse_conn_id, connection.host, connection.port)
        return _ServerBackend(connection)

    def get_conn(self) -> _EmbeddedBackend | _ServerBackend:
        return self.backend

    def run(self, name: str, params: Params | None = None, sql_dir: Path = SQL_DIR) -> list[list]:
        """Run every statement of ``<sql_dir>/<name>.sql``; return the last one's rows."""
        rows: list[list] = []
        for statement in sql.statements(name, sql_dir):
            rows = self.backend.execute(statement, params or {})
        return rows

    @contextmanager
    def stage(self, bucket: SourceBucket, key: str, member: str) -> Iterator[StagedObject]:
        """Make ``member`` of the object ``key`` readable by the engine for the block.

        :raises SourceObjectMissing: the key does not exist.
        :raises SourceFormatError: (embedded) the object is not a ZIP with ``member``.
        """
        with self.backend.stage(bucket, key, member) as staged:
            yield staged

    def load_json_lines(
        self, target: Params, table: SourceTable, source: StagedObject, metadata: Params
    ) -> None:
        """Append the JSON lines of a staged object to ``table``'s loads table, parsed by the engine."""
        self.backend.load(target, table, source, metadata)

    def close(self) -> None:
        if "backend" in self.__dict__:
            self.backend.close()
            del self.__dict__["backend"]

    def __enter__(self) -> ClickHouseHook:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
