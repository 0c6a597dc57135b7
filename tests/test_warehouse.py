"""The warehouse hook: one connection picks the backend, the same SQL runs on both."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from source_objects import device_record

from clickstream.config import get_settings
from clickstream.loading import ensure_schema
from clickstream.warehouse import LOAD_METADATA_COLUMNS, ClickHouseHook


def test_string_parameters_arrive_verbatim_on_the_embedded_engine(chdb_path):
    tricky = 'two\nlines\tand a tab, a "quote", a \\ backslash and a literal \\n'
    with ClickHouseHook() as hook:
        [[value, length]] = hook.backend.execute(
            "SELECT {value:String}, length({value:String})", {"value": tricky}
        )
    assert (value, length) == (tricky, len(tricky.encode()))


@pytest.mark.parametrize("table", get_settings().tables, ids=lambda table: table.name)
def test_loads_table_columns_follow_the_config(chdb_path, table):
    """The loader inserts by position: metadata columns first, then the JSON keys in config order."""
    with ClickHouseHook() as hook:
        ensure_schema(hook, get_settings())
        columns = hook.backend.execute(
            "SELECT name, type FROM system.columns WHERE database = 'clickstream' AND table = {table:String} "
            "ORDER BY position",
            {"table": table.loads_table},
        )
    expected = [*LOAD_METADATA_COLUMNS, *((c.name, c.type) for c in table.columns)]
    assert [name for name, _ in columns] == [name for name, _ in expected]
    for (name, actual), (_, declared) in zip(columns, expected, strict=True):
        assert actual in {declared, f"LowCardinality({declared})"}, name


def test_schema_creation_is_idempotent(chdb_path):
    with ClickHouseHook() as hook:
        ensure_schema(hook, get_settings())
        ensure_schema(hook, get_settings())
        tables = hook.backend.execute(
            "SELECT name FROM system.tables WHERE database = 'clickstream' ORDER BY name", {}
        )
    assert [name for (name,) in tables] == sorted(
        [
            *get_settings().table_names,
            *(t.loads_table for t in get_settings().tables),
            "committed_loads",
            "ingest_log",
        ]
    )


class RecordingClient:
    """Stands in for a ClickHouse server, which does not run on this machine."""

    instances: list[RecordingClient] = []

    def __init__(self, **options):
        self.options = options
        self.calls = []
        RecordingClient.instances.append(self)

    def execute(self, statement, params=None, **kwargs):
        self.calls.append((statement, params, kwargs))
        return [("ok",)]

    def disconnect(self):
        pass


@pytest.fixture
def server_connection(monkeypatch):
    import clickhouse_driver

    RecordingClient.instances.clear()
    monkeypatch.setattr(clickhouse_driver, "Client", RecordingClient)
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT",
        json.dumps(
            {
                "conn_type": "clickhouse",
                "host": "clickhouse.internal",
                "port": 9440,
                "login": "loader",
                "password": "not-a-real-password",
                "schema": "clickstream",
                "extra": {
                    "secure": True,
                    "ca_certs": "/etc/ssl/yandex-ca.pem",
                    "settings": {"max_threads": 4},
                },
            }
        ),
    )


def test_a_server_connection_builds_a_native_client_with_server_side_parameters(server_connection):
    with ClickHouseHook() as hook:
        assert hook.run("create_database", {"database": "clickstream"}) == [["ok"]]
    [client] = RecordingClient.instances
    assert client.options == {
        "host": "clickhouse.internal",
        "port": 9440,
        "user": "loader",
        "password": "not-a-real-password",
        "database": "clickstream",
        "secure": True,
        "verify": True,
        "ca_certs": "/etc/ssl/yandex-ca.pem",
        "settings": {"server_side_params": True, "max_threads": 4},
    }
    [(statement, params, _)] = client.calls
    assert statement == "CREATE DATABASE IF NOT EXISTS {database:Identifier}"
    assert params == {"database": "clickstream"}


def test_a_server_receives_typed_rows_in_native_blocks(server_connection, tmp_path):
    table = get_settings().table("device_events")
    line = device_record()
    path = tmp_path / "device_events.jsonl"
    path.write_text(json.dumps(line) + "\n")
    load_id = str(uuid.uuid4())
    metadata = {
        "window_start": "2024-04-10 23:00:00",
        "load_id": load_id,
        "source_key": "k",
        "source_etag": "e",
        "loaded_at": "2024-04-11 00:01:02.000003",
    }
    with ClickHouseHook() as hook:
        hook.load_json_lines(
            {"database": "clickstream", "loads_table": "device_events_loads"}, table, path, metadata
        )
    [(statement, params, kwargs)] = RecordingClient.instances[0].calls
    assert statement == "INSERT INTO {database:Identifier}.{loads_table:Identifier}\nSELECT * FROM load_rows"
    assert params == {"database": "clickstream", "loads_table": "device_events_loads"}
    [external] = kwargs["external_tables"]
    assert external["name"] == "load_rows"
    names = [name for name, _ in external["structure"]]
    assert external["structure"] == [*LOAD_METADATA_COLUMNS, *((c.name, c.type) for c in table.columns)]
    assert [tuple(row[name] for name in names) for row in external["data"]] == [
        (
            datetime(2024, 4, 10, 23, tzinfo=UTC),
            uuid.UUID(load_id),
            "k",
            "e",
            datetime(2024, 4, 11, 0, 1, 2, 3, tzinfo=UTC),
            uuid.UUID(line["click_id"]),
            "Android 1.5",
            "Android",
            "UTC",
            "Mobile",
            True,
            "someone@example.com",
            uuid.UUID(line["user_domain_id"]),
        )
    ]
