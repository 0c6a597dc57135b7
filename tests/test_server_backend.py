"""The server backend through the real clickhouse-driver, over a socket, to a ClickHouse server.

No ClickHouse server runs here: the server is ``tests/fake_clickhouse.py``, the native
protocol in front of the embedded 25.8 engine. The driver, its parameters, reconnects,
compression and typed results are real; what the fake stands in for (reading a ZIP member,
which chdb cannot) is said in its docstring.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import local_stack
import pytest
from airflow.models.connection import Connection
from clickhouse_driver.errors import ServerException
from fake_clickhouse import member_sidecar_key
from reference_marts import as_counts, read_marts, reference_marts
from source_objects import put_object, put_table, zip_bytes
from test_ingest import HOUR, browser_line, browser_lines, checksums

from clickstream import marts, records, sql
from clickstream import warehouse as warehouse_module
from clickstream.loading import WarehouseRejectedObject, WindowLoader, ensure_schema, source_bucket
from clickstream.source import SourceFormatError, SourceObjectMissing, member_name, object_key
from clickstream.warehouse import ClickHouseHook, ConnectionConfigError, client_options, parse_bool


def put_for_server(s3_client, bucket: str, window_start: datetime, table: str, lines: list[str]) -> str:
    """Write the ZIP object, and beside it the member the fake server reads in its place."""
    body = "".join(line + "\n" for line in lines)
    key = put_object(s3_client, bucket, window_start, table, zip_bytes(member_name(table), lines))
    sidecar = member_sidecar_key(key, member_name(table))
    s3_client.put_object(Bucket=bucket, Key=sidecar, Body=gzip.compress(body.encode()))
    return key


@pytest.fixture
def server_hook(clickhouse_server, settings):
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        yield hook


def test_a_load_sends_one_statement_and_no_rows(s3_client, bucket, settings, server_hook, clickhouse_server):
    key = put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(30))
    result = WindowLoader(server_hook, source_bucket(settings), settings).load(
        settings.table("browser_events"), HOUR
    )
    assert (result.status, result.rows) == ("loaded", 30)
    assert checksums(server_hook, "browser_events")["2024-04-10 23:00:00"][0] == 30
    [insert] = [q for q in clickhouse_server.received if "FROM s3(" in q.query]
    assert insert.query == sql.statement("insert_loads_from_s3")
    endpoint = json.loads(local_stack.s3_connection_uri("x"))  # the keys the worker signs with
    url = f"{source_bucket(settings)._client.meta.endpoint_url}/{bucket}/{key.replace('=', '%3D')}"
    assert insert.params["url"] == f"'{url} :: browser_events.jsonl'"
    assert insert.settings["input_format_json_read_numbers_as_strings"] == "0"
    everything_sent = json.dumps([q.__dict__ for q in clickhouse_server.received])
    assert endpoint["password"] not in everything_sent and endpoint["login"] not in everything_sent
    assert all(len(q.query) < 3000 for q in clickhouse_server.received), "no rows travel with a query"


def test_a_rejected_object_is_located_by_the_reference_reader(
    s3_client, bucket, settings, server_hook, clickhouse_server
):
    table = settings.table("browser_events")
    loader = WindowLoader(server_hook, source_bucket(settings), settings)
    put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(20))
    loader.load(table, HOUR)
    before = checksums(server_hook, "browser_events")

    key = put_for_server(
        s3_client, bucket, HOUR, "browser_events", [*browser_lines(5), browser_line(6, timestamp="yesterday")]
    )
    with pytest.raises(SourceFormatError, match=rf"s3://{bucket}/{key} line 6: key 'event_timestamp'"):
        loader.load(table, HOUR)
    assert checksums(server_hook, "browser_events") == before


def test_a_missing_object_is_known_before_the_server_is_asked(
    bucket, settings, server_hook, clickhouse_server
):
    sent_before = len(clickhouse_server.received)
    with pytest.raises(SourceObjectMissing, match="object does not exist"):
        WindowLoader(server_hook, source_bucket(settings), settings).load(settings.table("geo_events"), HOUR)
    assert not any("FROM s3(" in q.query for q in clickhouse_server.received[sent_before:])


def test_marts_refresh_runs_on_the_server_with_typed_results(
    s3_client, bucket, settings, server_hook, tmp_path
):
    from synthetic_clickstream import write_hour_archives

    loader = WindowLoader(server_hook, source_bucket(settings), settings)
    window: dict[str, list[dict]] = {}
    for table, archive in write_hour_archives(HOUR, 200, 5, tmp_path).items():
        with zipfile.ZipFile(archive) as opened:
            lines = opened.read(member_name(table)).decode().splitlines()
        window[table] = [json.loads(line) for line in lines]
        put_for_server(s3_client, bucket, HOUR, table, lines)
        assert loader.load(settings.table(table), HOUR).rows == len(lines)
    result = marts.refresh(server_hook, settings)
    assert result.mode == marts.FULL and result.loads_applied == 4
    assert marts.refresh(server_hook, settings).loads_applied == 0
    # The whole data set of tests/test_marts_reference.py runs on the server too; this one
    # checks a generated hour, read back through the driver's typed results.
    expected = reference_marts(
        {HOUR: window},
        settings.marts.purchase_page_path,
        settings.marts.checkout_paths,
        timedelta(hours=settings.marts.journey_lookback_hours),
        timedelta(hours=settings.source.event_time_tolerance_hours),
    )
    assert read_marts(server_hook, settings) == as_counts(expected)


def test_after_an_error_the_driver_reconnects_to_a_database_not_a_placeholder(server_hook, clickhouse_server):
    """Every USE the SQL files hold reaches the driver with the name, which it keeps for reconnects."""
    with pytest.raises(Exception, match="no_such_function"):
        server_hook.backend.execute("SELECT no_such_function()", {})
    assert server_hook.run("select_row_count", {"database": "clickstream", "table": "ingest_log"}) == [[0]]
    assert clickhouse_server.hellos[-1] == "clickstream"
    assert not any("{" in database for database in clickhouse_server.hellos)


def test_the_fake_reproduces_the_placeholder_reconnect_of_a_bare_use(clickhouse_server):
    """The check above can fail: a USE sent with its placeholder poisons the driver's reconnect."""
    from clickhouse_driver import Client

    client = Client(**client_options(ClickHouseHook().get_connection("clickhouse_default")))
    client.execute("CREATE DATABASE IF NOT EXISTS clickstream")
    client.execute("USE {database:Identifier}", {"database": "clickstream"})
    with pytest.raises(Exception, match="no_such_function"):
        client.execute("SELECT no_such_function()")
    with pytest.raises(Exception, match=r"Database `\{database:Identifier\}` does not exist"):
        client.execute("SELECT 1")
    client.disconnect()


TYPED = (
    "SELECT 7::UInt64, 'x', toDateTime64('2024-04-10 23:01:02.123456', 6, 'UTC'), "
    "toDateTime('2024-04-10 23:00:00'), toUUID('10000000-0000-4000-8000-000000000001'), "
    "toDecimal64(1.25, 2), [1, 2], true, CAST(NULL AS Nullable(String))"
)
EXPECTED = [
    7,
    "x",
    datetime(2024, 4, 10, 23, 1, 2, 123456, tzinfo=UTC),
    datetime(2024, 4, 10, 23, 0),
    UUID("10000000-0000-4000-8000-000000000001"),
    Decimal("1.25"),
    [1, 2],
    True,
    None,
]


def test_server_results_are_typed_as_the_driver_decodes_them(server_hook):
    [row] = server_hook.backend.execute(TYPED, {})
    assert row == EXPECTED
    assert [type(value) for value in row] == [type(value) for value in EXPECTED]


def test_the_embedded_engine_answers_in_the_same_shape(chdb_path):
    with ClickHouseHook() as hook:
        [row] = hook.backend.execute(TYPED, {})
    assert row == EXPECTED
    assert [type(value) for value in row] == [type(value) for value in EXPECTED]


@pytest.mark.parametrize("compression", ["lz4", "zstd", "true"])
def test_compression_set_in_the_connection_is_used(clickhouse_server, monkeypatch, compression):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT",
        local_stack.server_connection_uri(clickhouse_server.port, compression=compression),
    )
    with ClickHouseHook() as hook:
        assert hook.backend.execute("SELECT number FROM numbers(3)", {}) == [[0], [1], [2]]
    assert clickhouse_server.received[-1].compression


# --- connection extras ----------------------------------------------------------------------


def connection(extra: dict | None = None, **fields) -> Connection:
    return Connection(
        conn_id="clickhouse_default",
        conn_type="clickhouse",
        host="ch",
        extra=json.dumps(extra or {}),
        **fields,
    )


def test_extras_have_documented_defaults():
    options = client_options(connection())
    assert options == {
        "host": "ch",
        "port": 9000,
        "user": "default",
        "password": "",
        "database": "default",
        "secure": False,
        "verify": True,
        "connect_timeout": 10.0,
        "send_receive_timeout": 300.0,
        "sync_request_timeout": 5.0,
        "compression": False,
        "tcp_keepalive": (60, 10, 6),
        "client_name": "clickstream",
        "settings": {"server_side_params": True},
        "settings_is_important": True,
    }


def test_a_uri_form_connection_gives_strings_that_are_parsed():
    uri = (
        "clickhouse://loader:secret@ch.example:9440/clickstream?secure=true&verify=false"
        "&connect_timeout=3&send_receive_timeout=900&compression=zstd&tcp_keepalive=false"
        "&ca_certs=%2Fetc%2Fssl%2Fyandex.pem"
    )
    options = client_options(Connection(conn_id="clickhouse_default", uri=uri))
    assert options["secure"] is True and options["verify"] is False
    assert (options["port"], options["database"], options["user"]) == (9440, "clickstream", "loader")
    assert (options["connect_timeout"], options["send_receive_timeout"]) == (3.0, 900.0)
    assert (options["compression"], options["tcp_keepalive"]) == ("zstd", False)
    assert options["ca_certs"] == "/etc/ssl/yandex.pem"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("off", False),
        (True, True),
    ],
)
def test_boolean_extras_parse_true_and_false(text, expected):
    assert parse_bool(text, "secure") is expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"secure": "maybe"}, "'secure' is 'maybe'", id="bool"),
        pytest.param({"connect_timeout": "soon"}, "'connect_timeout' is 'soon'", id="timeout"),
        pytest.param({"compression": "gzip"}, "'compression' is 'gzip'", id="compression"),
        pytest.param({"tcp_keepalive": [60, 10]}, "'tcp_keepalive'", id="keepalive"),
        pytest.param({"secrue": True}, "unknown extra(s) secrue", id="typo"),
    ],
)
def test_a_bad_extra_is_named(extra, message):
    with pytest.raises(ConnectionConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        client_options(connection(extra))


def test_the_server_reads_the_object_at_the_endpoint_it_reaches(s3_client, bucket, settings):
    """``s3_endpoint_url`` names the endpoint as the server sees it (it may differ from the worker's)."""
    key = object_key(settings.source.key_template, HOUR, "geo_events")
    url = source_bucket(settings).object_url(key, "https://storage.yandexcloud.net")
    assert (
        url
        == f"https://storage.yandexcloud.net/{bucket}/year%3D2024/month%3D04/day%3D10/hour%3D23/geo_events.jsonl.zip"
    )


# --- settings a server cannot skip ------------------------------------------------------------

MISSPELLED = "input_format_json_read_numbers_as_strinsg"


def load_browser_events(s3_client, bucket, settings):
    put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(5))
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        return WindowLoader(hook, source_bucket(settings), settings).load(
            settings.table("browser_events"), HOUR
        )


@pytest.mark.parametrize("where", ["connection", "input-contract"])
def test_a_misspelled_setting_fails_the_server_load_naming_it(
    s3_client, bucket, settings, clickhouse_server, monkeypatch, where
):
    if where == "connection":
        monkeypatch.setenv(
            "AIRFLOW_CONN_CLICKHOUSE_DEFAULT",
            local_stack.server_connection_uri(clickhouse_server.port, settings={MISSPELLED: 0}),
        )
        put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(5))
        with pytest.raises(ServerException, match=rf"(?s)Code: 115.*{MISSPELLED}"), ClickHouseHook() as hook:
            ensure_schema(hook, settings)
    else:
        monkeypatch.setitem(records.ENGINE_SETTINGS, MISSPELLED, 0)
        with pytest.raises(WarehouseRejectedObject, match=MISSPELLED):
            load_browser_events(s3_client, bucket, settings)
    assert clickhouse_server.skipped_settings == []


def test_without_the_important_flag_the_server_would_skip_the_setting_silently(
    s3_client, bucket, settings, clickhouse_server, monkeypatch
):
    """The stand-in follows the server's rule, so the test above fails if the flag is not sent."""
    unflagged = warehouse_module.client_options

    def without_flag(connection):
        return {**unflagged(connection), "settings_is_important": False}

    monkeypatch.setattr(warehouse_module, "client_options", without_flag)
    monkeypatch.setitem(records.ENGINE_SETTINGS, MISSPELLED, 0)

    assert load_browser_events(s3_client, bucket, settings).rows == 5
    assert MISSPELLED in clickhouse_server.skipped_settings


def test_a_misspelled_setting_fails_the_embedded_load_naming_it(
    s3_client, bucket, settings, warehouse, monkeypatch
):
    monkeypatch.setitem(records.ENGINE_SETTINGS, MISSPELLED, 0)
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(5))
    with pytest.raises(WarehouseRejectedObject, match=MISSPELLED):
        WindowLoader(warehouse, source_bucket(settings), settings).load(
            settings.table("browser_events"), HOUR
        )
