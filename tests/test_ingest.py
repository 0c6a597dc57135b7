"""The loading of source windows, on the real local S3 server and the real chdb engine."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from source_objects import device_record, put_object, put_sample_window, put_table, zip_bytes

from clickstream.config import get_settings
from clickstream.loading import (
    WindowError,
    WindowLoader,
    ensure_schema,
    parse_window_start,
    resolve_window,
    source_bucket,
)
from clickstream.source import SourceFormatError
from clickstream.warehouse import ClickHouseHook

HOUR = datetime(2024, 4, 10, 23, tzinfo=UTC)
NEXT_HOUR = HOUR + timedelta(hours=1)


def browser_line(n: int, timestamp: str = "2024-04-10 23:10:00.123456", **overrides) -> str:
    record = {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "event_timestamp": timestamp,
        "event_type": "pageview",
        "click_id": f"10000000-0000-4000-8000-{n % 7:012d}",
        "browser_name": "Chrome",
        "browser_user_agent": "Mozilla/5.0",
        "browser_language": "en_US",
    }
    record.update(overrides)
    return json.dumps(record)


def browser_lines(count: int, start: int = 0) -> list[str]:
    return [browser_line(n) for n in range(start, start + count)]


@pytest.fixture
def settings(bucket, s3_connection):
    base = get_settings()
    return replace(base, source=replace(base.source, bucket=bucket))


@pytest.fixture
def warehouse(chdb_path, settings):
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        yield hook


@pytest.fixture
def loader(warehouse, settings):
    return WindowLoader(warehouse, source_bucket(settings), settings)


def checksums(hook, table: str) -> dict[str, tuple[int, str]]:
    rows = hook.run("select_raw_checksum", {"database": "clickstream", "table": table})
    return {window: (int(count), checksum) for window, count, checksum in rows}


def ingest_log(hook, table: str) -> list[dict]:
    rows = hook.backend.execute(
        "SELECT status, toString(window_start), rows, error FROM clickstream.ingest_log "
        "WHERE table_name = {table:String} ORDER BY finished_at",
        {"table": table},
    )
    return [dict(zip(("status", "window_start", "rows", "error"), row, strict=True)) for row in rows]


def test_sample_window_loads_every_line_with_microseconds(s3_client, bucket, loader, warehouse, sample_dir):
    expected = put_sample_window(s3_client, bucket, HOUR, sample_dir)
    for table in get_settings().tables:
        result = loader.load(table, HOUR)
        assert (result.status, result.rows) == ("loaded", expected[table.name])
    assert expected == {table: 1000 for table in expected}
    assert checksums(warehouse, "browser_events")["2024-04-10 23:00:00"][0] == 1000
    first = warehouse.backend.execute(
        "SELECT toString(event_timestamp) FROM clickstream.browser_events "
        "WHERE event_id = '8cca1c7d-b0cc-4738-be92-c644101e3fff'",
        {},
    )
    assert first == [["2022-11-28 20:51:05.627882"]]


def test_browser_load_records_event_time_range(s3_client, bucket, loader, settings):
    lines = [browser_line(1, "2024-04-10 22:59:59.000001"), browser_line(2, "2024-04-10 23:30:00.5")]
    put_table(s3_client, bucket, HOUR, "browser_events", lines)
    result = loader.load(settings.table("browser_events"), HOUR)
    assert (result.min_event_time, result.max_event_time) == (
        "2024-04-10 22:59:59.000001",
        "2024-04-10 23:30:00.500000",
    )


def test_reloading_a_window_any_number_of_times_keeps_one_copy(
    s3_client, bucket, loader, warehouse, settings
):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(50))
    put_table(s3_client, bucket, NEXT_HOUR, "browser_events", browser_lines(30, start=100))
    loader.load(table, HOUR)
    first = checksums(warehouse, "browser_events")
    loader.load(table, HOUR)
    loader.load(table, NEXT_HOUR)
    loader.load(table, HOUR)
    after = checksums(warehouse, "browser_events")
    assert after["2024-04-10 23:00:00"] == first["2024-04-10 23:00:00"]
    assert after["2024-04-10 23:00:00"][0] == 50
    assert after["2024-04-11 00:00:00"][0] == 30
    stored = warehouse.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {})
    assert stored == [[80]], "superseded loads are deleted after the commit"


@pytest.mark.parametrize("new_count", [pytest.param(80, id="more-lines"), pytest.param(20, id="fewer-lines")])
def test_changed_object_replaces_exactly_its_window(
    s3_client, bucket, loader, warehouse, settings, new_count
):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(50))
    put_table(s3_client, bucket, NEXT_HOUR, "browser_events", browser_lines(30, start=1000))
    loader.load(table, HOUR)
    loader.load(table, NEXT_HOUR)
    before = checksums(warehouse, "browser_events")

    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(new_count, start=500))
    loader.load(table, HOUR)

    after = checksums(warehouse, "browser_events")
    assert after["2024-04-11 00:00:00"] == before["2024-04-11 00:00:00"]
    assert after["2024-04-10 23:00:00"][0] == new_count
    ids = warehouse.backend.execute(
        "SELECT min(toString(event_id)), max(toString(event_id)) FROM clickstream.browser_events "
        "WHERE window_start = '2024-04-10 23:00:00'",
        {},
    )
    assert ids == [
        [f"00000000-0000-4000-8000-{500:012d}", f"00000000-0000-4000-8000-{500 + new_count - 1:012d}"]
    ]


def corrupted_deflate(lines: list[str]) -> bytes:
    """A valid ZIP directory around deflated bytes that were damaged in the middle."""
    body = bytearray(zip_bytes("browser_events.jsonl", lines))
    middle = len(body) // 3
    body[middle : middle + 16] = bytes(16)
    return bytes(body)


BAD_INPUTS = [
    pytest.param(b"this is not a zip archive", None, "not a ZIP archive", id="not-a-zip"),
    pytest.param(
        zip_bytes("other.jsonl", browser_lines(3)), None, "no member 'browser_events.jsonl'", id="no-member"
    ),
    pytest.param(
        zip_bytes("browser_events.jsonl", [*browser_lines(4), '{"event_id": "broken', *browser_lines(2, 10)]),
        5,
        "malformed JSON",
        id="malformed-json",
    ),
    pytest.param(
        zip_bytes(
            "browser_events.jsonl",
            [
                *browser_lines(2),
                json.dumps({k: v for k, v in json.loads(browser_line(9)).items() if k != "click_id"}),
            ],
        ),
        3,
        "missing required key 'click_id'",
        id="missing-key",
    ),
    pytest.param(
        zip_bytes("browser_events.jsonl", [*browser_lines(6), browser_line(7, timestamp="yesterday")]),
        7,
        "key 'event_timestamp' holds 'yesterday'",
        id="wrong-type-timestamp",
    ),
    pytest.param(corrupted_deflate(browser_lines(300)), None, "line ", id="corrupt-deflate"),
    pytest.param(
        zip_bytes("browser_events.jsonl", [browser_line(1, event_id="not-a-uuid")]),
        1,
        "key 'event_id' holds 'not-a-uuid'",
        id="wrong-type-uuid",
    ),
]


@pytest.mark.parametrize(("body", "line", "reason"), BAD_INPUTS)
def test_bad_input_names_object_and_line_and_keeps_previous_content(
    s3_client, bucket, loader, warehouse, settings, body, line, reason
):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    loader.load(table, HOUR)
    before = checksums(warehouse, "browser_events")

    key = put_object(s3_client, bucket, HOUR, "browser_events", body)
    with pytest.raises(SourceFormatError) as raised:
        loader.load(table, HOUR)

    message = str(raised.value)
    assert f"s3://{bucket}/{key}" in message
    assert reason in message
    if line is not None:
        assert f"line {line}:" in message
    assert checksums(warehouse, "browser_events") == before
    failures = [entry for entry in ingest_log(warehouse, "browser_events") if entry["status"] == "rejected"]
    assert len(failures) == 1 and reason in failures[0]["error"]
    leftovers = warehouse.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {})
    assert leftovers == [[40]], "the failed load's staged rows are removed"


def test_an_uncompressed_member_loads_too(s3_client, bucket, loader, warehouse, settings):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as stored:
        stored.writestr("browser_events.jsonl", "\n".join(browser_lines(12)) + "\n")
    put_object(s3_client, bucket, HOUR, "browser_events", archive.getvalue())
    assert loader.load(settings.table("browser_events"), HOUR).rows == 12


def test_wrong_type_in_other_tables_is_named(s3_client, bucket, loader, settings):
    line = device_record(device_is_mobile="yes")
    put_table(s3_client, bucket, HOUR, "device_events", [json.dumps(line)])
    with pytest.raises(SourceFormatError, match=r"line 1: key 'device_is_mobile' holds 'yes'"):
        loader.load(settings.table("device_events"), HOUR)


class _InterleavingHook:
    """Runs ``during_stage`` after a load has staged its rows and before it commits."""

    def __init__(self, hook, during_stage):
        self._hook = hook
        self._during_stage = during_stage

    def __getattr__(self, name):
        return getattr(self._hook, name)

    def load_json_lines(self, *args, **kwargs):
        self._hook.load_json_lines(*args, **kwargs)
        during_stage, self._during_stage = self._during_stage, None
        if during_stage:
            during_stage()


@pytest.mark.parametrize(
    "other_window",
    [pytest.param(NEXT_HOUR, id="other-window-same-partition"), pytest.param(HOUR, id="same-window")],
)
def test_concurrent_loads_in_one_partition_lose_nothing(s3_client, bucket, warehouse, settings, other_window):
    """A load that commits while another is staged in the same partition loses nothing.

    No load reads and rewrites a partition: each one appends rows under its own load_id
    and commits with one row, so whatever order the steps of two loads interleave in,
    every committed window holds exactly its object's rows.
    """
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25))
    if other_window != HOUR:
        put_table(s3_client, bucket, other_window, "browser_events", browser_lines(35, start=100))
    other_loader = WindowLoader(warehouse, source_bucket(settings), settings)
    interleaving = _InterleavingHook(warehouse, lambda: other_loader.load(table, other_window))

    WindowLoader(interleaving, source_bucket(settings), settings).load(table, HOUR)

    counts = {window: rows for window, (rows, _) in checksums(warehouse, "browser_events").items()}
    expected = {"2024-04-10 23:00:00": 25} | ({"2024-04-11 00:00:00": 35} if other_window != HOUR else {})
    assert counts == expected
    assert warehouse.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {}) == [
        [sum(expected.values())]
    ]


@pytest.mark.parametrize(
    ("param", "interval_start", "expected"),
    [
        pytest.param("2024-04-11T05:00:00Z", None, datetime(2024, 4, 11, 5, tzinfo=UTC), id="param"),
        pytest.param("2024-04-11 05:00", HOUR, datetime(2024, 4, 11, 5, tzinfo=UTC), id="param-wins"),
        pytest.param(None, HOUR, HOUR, id="data-interval"),
    ],
)
def test_window_comes_from_param_or_data_interval(param, interval_start, expected):
    assert resolve_window(param, interval_start) == expected


def test_run_without_window_says_how_to_give_one():
    with pytest.raises(WindowError, match=r'\{"window_start": "2024-04-10T23:00:00Z"\}'):
        resolve_window(None, None)


@pytest.mark.parametrize("value", ["2024-04-11T05:30:00Z", "tomorrow"])
def test_window_start_must_be_an_iso_hour(value):
    with pytest.raises(WindowError, match=value):
        parse_window_start(value)
