"""The ClickHouse warehouse behind one Airflow connection, ``clickhouse_default``.

The connection decides where the SQL runs; the SQL is the same:

* a ClickHouse server over the native protocol (clickhouse-driver): host, port, login,
  password, schema (database); extra ``secure``, ``ca_certs``, ``verify`` and ``settings``;
* the embedded engine (chdb) when the extra names a data directory: ``{"chdb_path": "..."}``.

Query parameters are bound by the server in both cases (``{name:Type}``), so a value never
becomes SQL text. Results come back as lists of JSON-like values; queries whose results the
code reads cast timestamps and UUIDs to strings so both backends answer alike.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from clickstream import sql
from clickstream.config import SourceTable
from clickstream.records import RecordReader

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
INSERT_BATCH_ROWS = 50_000


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _escaped(value: str) -> str:
    # chdb hands parameter values to the engine as-is, and the engine reads them in its
    # escaped text format (a newline ends the value); clickhouse-driver escapes for us.
    return value.translate(_PARAMETER_ESCAPES)


_PARAMETER_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"})


class _EmbeddedBackend:
    """chdb in this process: one data directory per process, held until ``close``."""

    def __init__(self, path: str):
        from chdb import session

        Path(path).mkdir(parents=True, exist_ok=True)
        self._session = session.Session(path)
        self.path = path

    def execute(self, statement: str, params: Params) -> list[list]:
        bound = {name: _escaped(value) if isinstance(value, str) else value for name, value in params.items()}
        result = self._session.query(statement, "JSONCompact", params=bound)
        text = result.data() if result is not None else ""
        if not text.strip():
            return []
        return json.loads(text)["data"]

    def load_json_lines(self, target: Params, table: SourceTable, path: Path, metadata: Params) -> None:
        self.execute(
            sql.statement("insert_loads_from_file"),
            {**target, **metadata, "path": str(path), "structure": table.json_structure()},
        )

    def close(self) -> None:
        self._session.close()


class _ServerBackend:
    """A ClickHouse server over the native protocol."""

    def __init__(self, connection):
        from clickhouse_driver import Client

        extra = connection.extra_dejson
        settings = {"server_side_params": True, **extra.get("settings", {})}
        secure = bool(extra.get("secure", False))
        options = {
            "host": connection.host or "localhost",
            "port": connection.port or (9440 if secure else 9000),
            "user": connection.login or "default",
            "password": connection.password or "",
            "database": connection.schema or "default",
            "secure": secure,
            "verify": extra.get("verify", True),
            "settings": settings,
        }
        if extra.get("ca_certs"):
            options["ca_certs"] = extra["ca_certs"]
        self._client = Client(**options)

    def execute(self, statement: str, params: Params) -> list[list]:
        return [list(row) for row in self._client.execute(statement, dict(params))]

    def load_json_lines(self, target: Params, table: SourceTable, path: Path, metadata: Params) -> None:
        # The server cannot read the worker's disk: rows are parsed here and shipped with
        # the query as an external table, so the INSERT keeps its bound parameters.
        structure = [*LOAD_METADATA_COLUMNS, *((c.name, c.type) for c in table.columns)]
        names = [name for name, _ in structure]
        prefix = (
            _utc(metadata["window_start"]),
            uuid.UUID(metadata["load_id"]),
            metadata["source_key"],
            metadata["source_etag"],
            _utc(metadata["loaded_at"]),
        )
        rows = (prefix + record for record in RecordReader(table).read(path))
        insert = sql.statement("insert_loads_rows")
        while batch := list(islice(rows, INSERT_BATCH_ROWS)):
            external = {
                "name": "load_rows",
                "structure": structure,
                "data": [dict(zip(names, row, strict=True)) for row in batch],
            }
            self._client.execute(insert, dict(target), external_tables=[external])

    def close(self) -> None:
        self._client.disconnect()


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
    def backend(self) -> _EmbeddedBackend | _ServerBackend:
        connection = self.get_connection(self.clickhouse_conn_id)
        chdb_path = connection.extra_dejson.get("chdb_path")
        if chdb_path:
            log.info("Warehouse %s: embedded chdb at %s", self.clickhouse_conn_id, chdb_path)
            return _EmbeddedBackend(chdb_path)
        log.info("Warehouse %s: server %s:%s", self.clickhouse_conn_id, connection.host, connection.port)
        return _ServerBackend(connection)

    def get_conn(self) -> _EmbeddedBackend | _ServerBackend:
        return self.backend

    def run(self, name: str, params: Params | None = None) -> list[list]:
        """Run every statement of ``include/sql/<name>.sql``; return the last one's rows."""
        rows: list[list] = []
        for statement in sql.statements(name):
            rows = self.backend.execute(statement, params or {})
        return rows

    def load_json_lines(self, target: Params, table: SourceTable, path: Path, metadata: Params) -> None:
        """Append the JSON lines of ``path`` to ``table``'s loads table, typed per the config."""
        self.backend.load_json_lines(target, table, path, metadata)

    def close(self) -> None:
        if "backend" in self.__dict__:
            self.backend.close()
            del self.__dict__["backend"]

    def __enter__(self) -> ClickHouseHook:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
