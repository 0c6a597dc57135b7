"""The input contract (README, "The input contract"): one test per rule, on both backends.

Each case loads one line through the product's loader: on the embedded engine, and through
the real driver on the server backend (the fake server of ``tests/fake_clickhouse.py``,
the same 25.8 engine behind the native protocol). Either the engine stores the value the
rule says, and the reference reader reads the same value; or the engine rejects the line and
the reference reader names it and the key.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

import pytest
from source_objects import device_record, put_table
from test_ingest import HOUR, browser_line
from test_server_backend import put_for_server

from clickstream import records
from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.loading import WindowLoader, ensure_schema, source_bucket
from clickstream.records import RecordError, RecordReader
from clickstream.source import SourceFormatError
from clickstream.warehouse import ClickHouseHook

GEO = {
    "click_id": "10000000-0000-4000-8000-000000000001",
    "geo_latitude": "55.75",
    "geo_longitude": "37.62",
    "geo_country": "Russia",
    "geo_timezone": "Europe/Moscow",
    "geo_region_name": "Moscow",
    "ip_address": "10.0.0.1",
}
REJECTED = object()


@dataclass(frozen=True)
class Case:
    table: str
    key: str
    value: object
    stored: object  # the value as toString() shows it, or REJECTED

    def line(self) -> str:
        if self.table == "browser_events":
            return browser_line(1, **{self.key: self.value})
        base = device_record() if self.table == "device_events" else dict(GEO)
        return json.dumps(base | {self.key: self.value})


def case(rule: str, table: str, key: str, value, stored):
    return pytest.param(Case(table, key, value, stored), id=rule)


TS = "event_timestamp"
RULES = [
    # Timestamps with and without a fraction: UTC text; the fraction is optional, cut at 6 digits.
    case(
        "timestamp-with-fraction",
        "browser_events",
        TS,
        "2024-04-10 23:01:02.123456",
        "2024-04-10 23:01:02.123456",
    ),
    case(
        "timestamp-without-fraction",
        "browser_events",
        TS,
        "2024-04-10 23:01:02",
        "2024-04-10 23:01:02.000000",
    ),
    case(
        "timestamp-short-fraction",
        "browser_events",
        TS,
        "2024-04-10 23:01:02.5",
        "2024-04-10 23:01:02.500000",
    ),
    case(
        "timestamp-long-fraction",
        "browser_events",
        TS,
        "2024-04-10 23:01:02.1234567",
        "2024-04-10 23:01:02.123456",
    ),
    # ISO stamps: T may stand for the space; a zone designator is rejected.
    case("iso-t-separator", "browser_events", TS, "2024-04-10T23:01:02.123456", "2024-04-10 23:01:02.123456"),
    case("iso-z-suffix", "browser_events", TS, "2024-04-10T23:01:02.123456Z", REJECTED),
    case("iso-offset", "browser_events", TS, "2024-04-10T23:01:02+03:00", REJECTED),
    # Epoch numbers: a JSON number is rejected; a string of digits is Unix seconds; a date is midnight.
    case("epoch-number", "browser_events", TS, 1712790062, REJECTED),
    case("epoch-fraction-number", "browser_events", TS, 1712790062.5, REJECTED),
    case("epoch-digits-string", "browser_events", TS, "1712790062", "2024-04-10 23:01:02.000000"),
    case("epoch-five-digits", "browser_events", TS, "12345", "1970-01-01 03:25:45.000000"),
    case("epoch-four-digits", "browser_events", TS, "0", REJECTED),
    case("epoch-ticks-string", "browser_events", TS, "12345678901", "1970-01-01 03:25:45.678901"),
    case("date-alone", "browser_events", TS, "2024-04-10", "2024-04-10 00:00:00.000000"),
    case("timestamp-words", "browser_events", TS, "yesterday", REJECTED),
    # Numbers in string fields: a String or UUID field takes a JSON string only.
    case("number-in-string-field", "browser_events", "browser_name", 5, REJECTED),
    case("boolean-in-string-field", "browser_events", "browser_name", True, REJECTED),
    case("object-in-string-field", "browser_events", "browser_name", {"name": "Chrome"}, REJECTED),
    case("array-in-string-field", "browser_events", "browser_name", ["Chrome"], REJECTED),
    case("number-in-uuid-field", "browser_events", "event_id", 5, REJECTED),
    # ... also in a table whose decimals are read as written (records.EngineRead).
    case("number-in-string-field-beside-decimals", "geo_events", "geo_country", 7, REJECTED),
    case("boolean-in-string-field-beside-decimals", "geo_events", "ip_address", False, REJECTED),
    # ... and a decimal field takes a number, or a string holding one, as written (an empty one
    # holds none).
    case("decimal-in-string", "geo_events", "geo_latitude", "55.75", "55.75"),
    case("decimal-as-number", "geo_events", "geo_latitude", 55.75, "55.75"),
    case("decimal-exponent-string", "geo_events", "geo_latitude", "1e1", "10"),
    case("decimal-empty-string", "geo_events", "geo_latitude", "", REJECTED),
    case("decimal-as-written", "geo_events", "geo_latitude", "-10.95817", "-10.95817"),
    case("decimal-number-as-written", "geo_events", "geo_latitude", 10.13361, "10.13361"),
    case("decimal-words", "geo_events", "geo_latitude", "north", REJECTED),
    case("boolean-in-decimal-field", "geo_events", "geo_latitude", True, REJECTED),
    # Numeric or string booleans: true/false and 1/0 numbers; strings are rejected.
    case("boolean-true", "device_events", "device_is_mobile", True, "true"),
    case("boolean-false", "device_events", "device_is_mobile", False, "false"),
    case("boolean-one", "device_events", "device_is_mobile", 1, "true"),
    case("boolean-zero", "device_events", "device_is_mobile", 0, "false"),
    case("boolean-string", "device_events", "device_is_mobile", "true", REJECTED),
    case("boolean-digit-string", "device_events", "device_is_mobile", "1", REJECTED),
    # Missing values: a null is rejected.
    case("null", "device_events", "os_name", None, REJECTED),
]


@pytest.fixture(params=["embedded", "server"])
def backend(request, bucket, s3_connection, s3_client):
    """Return (hook, loader, put) for one backend: put writes a table's object for the window."""
    base = get_settings()
    settings = replace(base, source=replace(base.source, bucket=bucket))
    request.getfixturevalue("chdb_path" if request.param == "embedded" else "clickhouse_server")
    put = put_table if request.param == "embedded" else put_for_server
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        yield (
            hook,
            WindowLoader(hook, source_bucket(settings), settings),
            lambda table, lines: put(s3_client, bucket, HOUR, table, lines),
        )


def reader_value(value, stored: str):
    """Return the reference reader's value as toString() shows the engine's."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return stored if not math.isnan(value) and value == float(stored) else repr(value)
    return value


@pytest.mark.parametrize("rule", RULES)
def test_rule(backend, rule: Case):
    hook, loader, put = backend
    table = get_settings().table(rule.table)
    put(rule.table, [rule.line()])
    if rule.stored is REJECTED:
        with pytest.raises(SourceFormatError, match=rf"line 1: key '{rule.key}'"):
            loader.load(table, HOUR)
        return
    assert loader.load(table, HOUR).rows == 1
    [[stored]] = hook.backend.execute(
        f"SELECT toString({rule.key}) FROM clickstream.{rule.table}", {}
    )  # names from the cases above
    assert stored == rule.stored
    parsed = RecordReader(table).parse(rule.line(), 1)
    assert reader_value(parsed[table.column_names.index(rule.key)], stored) == rule.stored


def test_unknown_extra_keys_are_ignored(backend):
    _, loader, put = backend
    line = json.loads(browser_line(1)) | {"campaign_v2": {"id": 1}, "extra": "x"}
    put("browser_events", [json.dumps(line)])
    assert loader.load(get_settings().table("browser_events"), HOUR).rows == 1
    assert len(RecordReader(get_settings().table("browser_events")).parse(json.dumps(line), 1)) == 7


def test_empty_lines_are_skipped_and_counted(backend):
    _, loader, put = backend
    table = get_settings().table("browser_events")
    put("browser_events", [browser_line(1), "", "   ", browser_line(2)])
    assert loader.load(table, HOUR).rows == 2
    put("browser_events", [browser_line(1), "", "   ", browser_line(2, browser_name=7)])
    with pytest.raises(SourceFormatError, match=r"line 4: key 'browser_name'"):
        loader.load(table, HOUR)


def engine_text(value, clickhouse_type: str) -> str:
    """The reference reader's value as the engine's toString() writes the column."""
    if clickhouse_type == "UUID":
        return str(uuid.UUID(value))
    if clickhouse_type == "Float64":
        return value  # compared as numbers: the two spell a double differently ('10' and '10.0')
    return reader_value(value, "")


def test_every_value_of_the_real_sample_is_the_one_the_reader_reads(backend, sample_dir):
    """Floats included: each is the double nearest to the decimal the source wrote, on both
    backends, as Python's float() reads it (the JSON reader's fast path is one ulp off on 48
    of the sample's 2,000 coordinates)."""
    hook, loader, put = backend
    for table in get_settings().tables:
        lines = (sample_dir / f"{table.name}.jsonl").read_text().splitlines()
        put(table.name, lines)
        assert loader.load(table, HOUR).rows == len(lines)
        reader = RecordReader(table)
        expected = sorted(
            tuple(
                engine_text(value, column.type)
                for value, column in zip(reader.parse(line, number), table.columns, strict=True)
            )
            for number, line in enumerate(lines, start=1)
        )
        floats = {index for index, column in enumerate(table.columns) if column.type == "Float64"}
        select = ", ".join(f"toString({column.name})" for column in table.columns)  # names from the config
        stored = sorted(
            tuple(float(value) if index in floats else value for index, value in enumerate(row))
            for row in hook.backend.execute(f"SELECT {select} FROM clickstream.{table.name}", {})
        )
        assert len(stored) == len(expected)
        mismatched = [(got, want) for got, want in zip(stored, expected, strict=True) if got != want]
        assert mismatched == [], f"{table.name}: {len(mismatched)} rows differ, e.g. {mismatched[:2]}"


def test_the_server_receives_the_contract_with_the_load(clickhouse_server, s3_client, bucket, s3_connection):
    base = get_settings()
    settings = replace(base, source=replace(base.source, bucket=bucket))
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        put_for_server(s3_client, bucket, HOUR, "browser_events", [browser_line(1)])
        WindowLoader(hook, source_bucket(settings), settings).load(settings.table("browser_events"), HOUR)
    [insert] = [q for q in clickhouse_server.received if q.query.startswith("INSERT") and "s3(" in q.query]
    assert {name: insert.settings[name] for name in records.ENGINE_SETTINGS} == {
        name: str(value) for name, value in records.ENGINE_SETTINGS.items()
    }


def test_the_reader_rejects_what_it_cannot_name():
    table = get_settings().table("browser_events")
    with pytest.raises(RecordError, match="line 3: malformed JSON"):
        RecordReader(table).parse("{not json", 3)


# Each rejected line the README shows, and the line that produces it: the README's texts are
# the reader's, word for word.
EXPECTED_TIMESTAMP = (
    "expected a string 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, or Unix seconds of 5 to 10 digits"
)
README_EXAMPLES = [
    ("browser_events", 5, '{"event_id": "x" "event_type": "pageview"}',
     "line 5: malformed JSON (Expecting ',' delimiter at column 18)"),
    ("browser_events", 3, json.dumps({k: v for k, v in json.loads(browser_line(1)).items() if k != "click_id"}),
     "line 3: missing required key 'click_id'"),
    ("device_events", 4, json.dumps(device_record(os=None)), "line 4: key 'os' is null; expected String"),
    ("browser_events", 7, browser_line(1, timestamp="yesterday"),
     f"line 7: key 'event_timestamp' holds 'yesterday': not a timestamp; {EXPECTED_TIMESTAMP}"),
    ("browser_events", 8, browser_line(1, timestamp="2024-04-10T23:01:02Z"),
     "line 8: key 'event_timestamp' holds '2024-04-10T23:01:02Z': zone designator 'Z', which UTC times "
     f"leave out; {EXPECTED_TIMESTAMP}"),
    ("browser_events", 9, browser_line(1, timestamp=1712790062),
     "line 9: key 'event_timestamp' holds 1712790062: a number, whose unit (seconds or milliseconds) is "
     f"ambiguous; {EXPECTED_TIMESTAMP}"),
    ("browser_events", 2, browser_line(1, event_id="not-a-uuid"),
     "line 2: key 'event_id' holds 'not-a-uuid': not a UUID; expected 32 hex digits such as "
     "'0f8fad5b-d9cb-469f-a165-70867728950e'"),
    ("device_events", 6, json.dumps(device_record(device_is_mobile="yes")),
     "line 6: key 'device_is_mobile' holds 'yes': a string; expected true, false, 1 or 0"),
    ("browser_events", 4, browser_line(1, browser_name=5),
     "line 4: key 'browser_name' holds 5: a number; expected a JSON string"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "line", "raw", "text"), README_EXAMPLES)
def test_the_readmes_rejected_lines_are_the_readers_texts_word_for_word(table, line, raw, text):
    with pytest.raises(RecordError) as rejected:
        RecordReader(get_settings().table(table)).parse(raw, line)
    assert str(rejected.value) == text
    assert f"` {text}`" in (PROJECT_ROOT / "README.md").read_text(), "the README shows this text as it is"
