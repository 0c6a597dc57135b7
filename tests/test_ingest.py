"""The loading of source windows, on the real local S3 server and the real chdb engine."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import zipfile
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from interleaving import InterleavingHook
from source_objects import (
    deflate,
    device_record,
    put_object,
    put_sample_window,
    put_table,
    raw_zip,
    zip_bytes,
)

from clickstream import loading
from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.loading import (
    LoadDeadlineExceeded,
    WindowError,
    WindowLoader,
    parse_window_start,
    resolve_window,
    source_bucket,
    sweep_orphaned_loads,
)
from clickstream.source import SourceFormatError, SourceObjectMissing

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


MEMBER = "browser_events.jsonl"


def member_bytes(count: int) -> bytes:
    return "".join(line + "\n" for line in browser_lines(count)).encode()


def deflate_damaged_after(good_lines: int, total: int) -> bytes:
    """A ZIP whose deflate stream decodes ``good_lines`` lines, then meets an invalid block.

    The stream is flushed to a block boundary after those lines and the next byte opens a
    block of the reserved type 3, so decoding must stop right there, whatever the decoder.
    """
    data = member_bytes(total)
    head_size = len(member_bytes(good_lines))
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(data[:head_size]) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(data[head_size:]) + compressor.flush()
    return raw_zip(MEMBER, head + b"\xff" + tail, method=8, crc=zlib.crc32(data), size=len(data))


def deflate_cut_after(good_lines: int, total: int) -> bytes:
    """A ZIP whose deflate stream stops, flushed but unfinished, after ``good_lines`` lines."""
    data = member_bytes(total)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(member_bytes(good_lines)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return raw_zip(MEMBER, head, method=8, crc=zlib.crc32(data), size=len(data))


def stored_with_flipped_byte(count: int) -> bytes:
    """A stored member, its CRC-32 right in the directory, one byte of its data changed."""
    data = member_bytes(count)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    return raw_zip(MEMBER, bytes(damaged), method=0, crc=zlib.crc32(data), size=len(data))


def deflated_with_wrong_crc(count: int) -> bytes:
    """A deflate stream that decodes cleanly, but not to the CRC-32 the directory records."""
    data = member_bytes(count)
    return raw_zip(MEMBER, deflate(data), method=8, crc=zlib.crc32(data) ^ 0x00010000, size=len(data))


def zipped_with(method: int) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", method) as written:
        written.writestr(MEMBER, member_bytes(20))
    return archive.getvalue()


def encrypted() -> bytes:
    """A member flagged as encrypted with ZipCrypto (bit 0 of its flags), as zip -e writes it."""
    data = member_bytes(20)
    return raw_zip(
        MEMBER, b"\x00" * 12 + deflate(data), method=8, crc=zlib.crc32(data), size=len(data), flags=0x1
    )


def corrupted_deflate(lines: list[str]) -> bytes:
    """A valid ZIP directory around deflated bytes that were damaged in the middle."""
    body = bytearray(zip_bytes(MEMBER, lines))
    middle = len(body) // 3
    body[middle : middle + 16] = bytes(16)
    return bytes(body)


GOOD_ARCHIVE = zip_bytes(MEMBER, browser_lines(300))
ERROR_PAGE = b"<!DOCTYPE html>\n<html><body>Service unavailable</body></html>\n"

# (object body, the line the message must name or None for none, what it must say)
BAD_INPUTS = [
    pytest.param(b"", None, "not a ZIP archive: the object is empty (0 bytes)", id="empty"),
    pytest.param(
        GOOD_ARCHIVE[: len(GOOD_ARCHIVE) // 2],
        None,
        f"truncated ZIP archive: the object ({len(GOOD_ARCHIVE) // 2} bytes) starts like a ZIP archive",
        id="truncated",
    ),
    pytest.param(
        gzip.compress(member_bytes(10), mtime=0),
        None,
        f"not a ZIP archive: the object ({len(gzip.compress(member_bytes(10), mtime=0))} bytes) is gzip data",
        id="gzip",
    ),
    pytest.param(
        ERROR_PAGE,
        None,
        f"not a ZIP archive: the object ({len(ERROR_PAGE)} bytes) is an HTML page",
        id="html",
    ),
    pytest.param(
        b"this is not a zip archive",
        None,
        "not a ZIP archive: the object (25 bytes) is of unknown format (it starts with bytes 74 68 69 73",
        id="unknown-bytes",
    ),
    pytest.param(
        zip_bytes("other.jsonl", browser_lines(3)), None, "no member 'browser_events.jsonl'", id="no-member"
    ),
    pytest.param(
        zip_bytes(MEMBER, [*browser_lines(4), '{"event_id": "broken', *browser_lines(2, 10)]),
        5,
        "malformed JSON (Invalid control character at the end of the line)",
        id="malformed-json",
    ),
    pytest.param(
        zip_bytes(MEMBER, [*browser_lines(2), browser_line(3)[:-1] + ' "extra"}']),
        3,
        "malformed JSON (Expecting ',' delimiter at column",
        id="malformed-json-column",
    ),
    pytest.param(
        zip_bytes(
            MEMBER,
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
        zip_bytes(MEMBER, [*browser_lines(6), browser_line(7, timestamp="yesterday")]),
        7,
        "key 'event_timestamp' holds 'yesterday'",
        id="wrong-type-timestamp",
    ),
    pytest.param(
        zip_bytes(MEMBER, [browser_line(1, event_id="not-a-uuid")]),
        1,
        "key 'event_id' holds 'not-a-uuid'",
        id="wrong-type-uuid",
    ),
    pytest.param(
        stored_with_flipped_byte(1000),
        None,
        f"member '{MEMBER}' is damaged: its CRC-32 is",
        id="stored-crc-mismatch",
    ),
    pytest.param(
        deflated_with_wrong_crc(1000),
        None,
        f"member '{MEMBER}' is damaged: its CRC-32 is",
        id="deflated-crc-mismatch",
    ),
    pytest.param(
        deflate_damaged_after(100, 300),
        101,
        f"member '{MEMBER}' is damaged: its compressed data stops decoding in this line (",
        id="deflate-stops-decoding",
    ),
    pytest.param(
        deflate_cut_after(100, 300),
        101,
        f"member '{MEMBER}' is damaged: its compressed data ends before its end marker",
        id="deflate-cut-short",
    ),
    pytest.param(
        corrupted_deflate(browser_lines(300)), None, f"member '{MEMBER}' is damaged", id="corrupt-deflate"
    ),
    pytest.param(
        encrypted(),
        None,
        f"member '{MEMBER}' is encrypted; the loader reads only unencrypted members",
        id="encrypted",
    ),
    pytest.param(
        zipped_with(zipfile.ZIP_BZIP2),
        None,
        f"member '{MEMBER}' uses ZIP compression method 12 (bzip2), which the loader does not read",
        id="bzip2-member",
    ),
    pytest.param(
        zipped_with(zipfile.ZIP_LZMA),
        None,
        f"member '{MEMBER}' uses ZIP compression method 14 (LZMA), which the loader does not read",
        id="lzma-member",
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
    assert message.startswith(f"s3://{bucket}/{key}")
    assert reason in message
    # One line number per message: the file's, and only where a line is at fault.
    assert re.findall(r"\bline \d+", message) == ([f"line {line}"] if line is not None else [])
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


def test_an_object_gone_since_it_was_listed_ends_its_attempt_as_absent(warehouse, settings, bucket):
    loader = WindowLoader(warehouse, source_bucket(settings), settings)
    with pytest.raises(
        SourceObjectMissing, match=rf"s3://{bucket}/year=2024/month=04/day=10/hour=23/geo_events"
    ):
        loader.load(settings.table("geo_events"), HOUR)
    # On record, and final for no one: the caller decides what the absence means.
    assert [entry["status"] for entry in ingest_log(warehouse, "geo_events")] == ["started", "absent"]


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
    interleaving = InterleavingHook(warehouse, lambda: other_loader.load(table, other_window))

    WindowLoader(interleaving, source_bucket(settings), settings).load(table, HOUR)

    counts = {window: rows for window, (rows, _) in checksums(warehouse, "browser_events").items()}
    expected = {"2024-04-10 23:00:00": 25} | ({"2024-04-11 00:00:00": 35} if other_window != HOUR else {})
    assert counts == expected
    assert warehouse.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {}) == [
        [sum(expected.values())]
    ]


def staged_loads(hook) -> dict[str, int]:
    rows = hook.backend.execute(
        "SELECT toString(load_id), count() FROM clickstream.browser_events_loads GROUP BY load_id", {}
    )
    return {load_id: int(count) for load_id, count in rows}


def statuses_by_load(hook) -> dict[str, list[str]]:
    rows = hook.backend.execute(
        "SELECT toString(load_id), groupArray(status) FROM "
        "(SELECT load_id, status FROM clickstream.ingest_log ORDER BY finished_at) GROUP BY load_id",
        {},
    )
    return {load_id: list(statuses) for load_id, statuses in rows}


def test_an_attempt_is_on_record_from_its_start(s3_client, bucket, warehouse, settings):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25))
    seen = {}

    def look():
        seen["statuses"] = statuses_by_load(warehouse)
        seen["staged"] = staged_loads(warehouse)

    result = WindowLoader(InterleavingHook(warehouse, look), source_bucket(settings), settings).load(
        table, HOUR
    )

    assert seen["statuses"] == {result.load_id: ["started"]}, "while staged, the attempt has its started row"
    assert seen["staged"] == {result.load_id: 25}
    assert statuses_by_load(warehouse) == {result.load_id: ["started", "loaded"]}


class _WorkerClockAnHourBehind(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) - timedelta(hours=1)


def test_a_reload_from_a_worker_whose_clock_is_behind_wins(
    s3_client, bucket, loader, warehouse, settings, monkeypatch
):
    """The warehouse orders commits: a worker's clock an hour behind cannot make its reload
    lose to the load it replaces, nor its clean-up delete its own rows."""
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    loader.load(table, HOUR)
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25, start=300))
    monkeypatch.setattr(loading, "datetime", _WorkerClockAnHourBehind)

    reload = loader.load(table, HOUR)

    committed = warehouse.backend.execute(
        "SELECT toString(load_id) FROM clickstream.committed_loads WHERE table_name = 'browser_events'", {}
    )
    assert committed == [[reload.load_id]]
    assert checksums(warehouse, "browser_events")["2024-04-10 23:00:00"][0] == 25
    assert staged_loads(warehouse) == {reload.load_id: 25}


def test_a_sweep_never_touches_a_load_in_flight(s3_client, bucket, warehouse, settings):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    loader = WindowLoader(warehouse, source_bucket(settings), settings)
    loader.load(table, HOUR)
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25, start=300))
    swept = {}

    def sweep():
        swept.update(sweep_orphaned_loads(warehouse, settings))
        swept["staged"] = sorted(staged_loads(warehouse).values())

    result = WindowLoader(InterleavingHook(warehouse, sweep), source_bucket(settings), settings).load(
        table, HOUR
    )

    assert swept == {name: 0 for name in settings.table_names} | {"staged": [25, 40]}
    assert checksums(warehouse, "browser_events")["2024-04-10 23:00:00"][0] == 25
    assert staged_loads(warehouse) == {result.load_id: 25}, "the superseded load is deleted after the commit"


class _MonotonicClock:
    """A monotonic clock that moves only when the test says: a load's elapsed time, set exactly."""

    def __init__(self):
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds


def test_a_load_past_its_deadline_does_not_commit(s3_client, bucket, warehouse, settings, monkeypatch):
    short = replace(settings, ingest=replace(settings.ingest, load_deadline_seconds=60))
    table = short.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    WindowLoader(warehouse, source_bucket(settings), settings).load(table, HOUR)
    before = checksums(warehouse, "browser_events")
    key = put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25, start=300))
    clock = _MonotonicClock()
    monkeypatch.setattr(loading, "time", clock)

    def stage_takes_longer_than_the_deadline():
        clock.seconds += 60.5

    slow = InterleavingHook(warehouse, stage_takes_longer_than_the_deadline)

    with pytest.raises(
        LoadDeadlineExceeded,
        match=rf"s3://{bucket}/{key}: the load took 60\.5 s, longer than ingest.load_deadline_seconds \(60\)",
    ):
        WindowLoader(slow, source_bucket(short), short).load(table, HOUR)

    assert checksums(warehouse, "browser_events") == before
    assert sorted(statuses_by_load(warehouse).values()) == [["started", "failed"], ["started", "loaded"]]
    assert sorted(staged_loads(warehouse).values()) == [40], "its staged rows are deleted"


class _RecordingHook:
    """Records the name of every SQL file run (and each load_json_lines) through the real hook."""

    def __init__(self, hook):
        self._hook = hook
        self.names = []

    def __getattr__(self, name):
        return getattr(self._hook, name)

    def run(self, name, params=None):
        self.names.append(name)
        return self._hook.run(name, params)

    def load_json_lines(self, *args, **kwargs):
        self.names.append("load_json_lines")
        return self._hook.load_json_lines(*args, **kwargs)


def test_loads_and_sweeps_delete_only_when_there_is_something_to_delete(
    s3_client, bucket, warehouse, settings
):
    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(10))
    put_table(s3_client, bucket, NEXT_HOUR, "browser_events", browser_lines(10, start=100))
    recording = _RecordingHook(warehouse)
    loader = WindowLoader(recording, source_bucket(settings), settings)

    loader.load(table, HOUR)
    loader.load(table, NEXT_HOUR)
    sweep_orphaned_loads(recording, settings)

    first_load = ["insert_ingest_log", "select_raw_fence", "load_json_lines", "select_load_stats"]
    first_load += ["insert_ingest_log_commit", "select_load_commit"]
    first_load.append("select_orphaned_loads")
    assert recording.names == 2 * first_load + ["select_orphaned_loads"] * len(settings.tables)

    recording.names.clear()
    loader.load(table, HOUR)
    assert recording.names == [*first_load, "delete_orphaned_loads"], (
        "a reload deletes the load it superseded"
    )
    assert sorted(staged_loads(warehouse).values()) == [10, 10]


def test_a_commit_whose_reply_was_lost_keeps_its_rows(s3_client, bucket, warehouse, settings):
    """The commit landed but the load cannot know it: its rows stay, and they are the window's."""

    class LostReplyHook(_RecordingHook):
        def run(self, name, params=None):
            rows = super().run(name, params)
            if name == "insert_ingest_log_commit":
                raise ConnectionError("connection reset while reading the reply")
            return rows

    table = settings.table("browser_events")
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(25))

    with pytest.raises(ConnectionError):
        WindowLoader(LostReplyHook(warehouse), source_bucket(settings), settings).load(table, HOUR)

    assert checksums(warehouse, "browser_events")["2024-04-10 23:00:00"][0] == 25
    assert list(statuses_by_load(warehouse).values()) == [["started", "loaded", "failed"]]
    sweep_orphaned_loads(warehouse, settings)
    assert checksums(warehouse, "browser_events")["2024-04-10 23:00:00"][0] == 25


def test_a_sweep_may_not_reach_loads_within_their_deadline(warehouse, settings):
    deadline = timedelta(seconds=settings.ingest.load_deadline_seconds)
    with pytest.raises(ValueError, match=r"shorter than ingest\.load_deadline_seconds"):
        sweep_orphaned_loads(warehouse, settings, older_than=deadline - timedelta(seconds=1))


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


def _local_header_with_method(body: bytes, method: int) -> bytes:
    """``body`` with its first local header claiming another compression method than the directory."""
    changed = bytearray(body)
    struct.pack_into("<H", changed, 8, method)
    return bytes(changed)


def _member_running_past_the_end(count: int) -> bytes:
    """A stored member whose directory claims more bytes than the object holds after it."""
    data = member_bytes(count)
    archive = bytearray(raw_zip(MEMBER, data, method=0, crc=zlib.crc32(data), size=len(data)))
    central = archive.rindex(b"PK\x01\x02")
    struct.pack_into("<2L", archive, central + 20, len(data) + 100_000, len(data) + 100_000)
    return bytes(archive)


def _stored_with_wrong_length(count: int) -> bytes:
    """A stored member whose CRC-32 is right but whose directory gives it another length."""
    data = member_bytes(count)
    return raw_zip(MEMBER, data, method=0, crc=zlib.crc32(data), size=len(data) - 98)


# Each rejected object the README shows, and the object that produces it: its texts are the
# loader's, word for word (after the object's s3:// name).
README_OBJECT_EXAMPLES = [
    (b"", ": not a ZIP archive: the object is empty (0 bytes); expected a ZIP archive holding 'browser_events.jsonl'"),
    (gzip.compress(member_bytes(10), mtime=0), ": not a ZIP archive: the object (236 bytes) is gzip data; expected a ZIP archive holding 'browser_events.jsonl'"),
    (ERROR_PAGE, ": not a ZIP archive: the object (62 bytes) is an HTML page; expected a ZIP archive holding 'browser_events.jsonl'"),
    (b"this is not a zip archive",
     ": not a ZIP archive: the object (25 bytes) is of unknown format (it starts with bytes 74 68 69 73 20 69 73 20); expected a ZIP archive holding 'browser_events.jsonl'"),
    (GOOD_ARCHIVE[: len(GOOD_ARCHIVE) // 2],
     ": truncated ZIP archive: the object (889 bytes) starts like a ZIP archive but lacks the directory that ends a complete one; expected a ZIP archive holding 'browser_events.jsonl'"),
    (zip_bytes("other.jsonl", browser_lines(3)), ": ZIP archive has no member 'browser_events.jsonl' (members: other.jsonl)"),
    (encrypted(), ": member 'browser_events.jsonl' is encrypted; the loader reads only unencrypted members"),
    (zipped_with(zipfile.ZIP_BZIP2),
     ": member 'browser_events.jsonl' uses ZIP compression method 12 (bzip2), which the loader does not read; expected stored (0) or deflate (8)"),
    (_local_header_with_method(GOOD_ARCHIVE, 0), ": member 'browser_events.jsonl' has a corrupt local header (it disagrees with the directory)"),
    (_member_running_past_the_end(100),
     ": member 'browser_events.jsonl' is truncated: its 127200 bytes from offset 50 run past the end of the object (27338 bytes)"),
    (deflate_damaged_after(100, 300),
     " line 101: member 'browser_events.jsonl' is damaged: its compressed data stops decoding in this line (invalid block type)"),
    (deflate_cut_after(100, 300), " line 101: member 'browser_events.jsonl' is damaged: its compressed data ends before its end marker"),
    (stored_with_flipped_byte(1000),
     ": member 'browser_events.jsonl' is damaged: its CRC-32 is 8a775e8a, the archive's directory says 6ddb672e"),
    (_stored_with_wrong_length(1000), ": member 'browser_events.jsonl' is damaged: it holds 272000 bytes, the archive's directory says 271902"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "text"), README_OBJECT_EXAMPLES)
def test_the_readmes_rejected_objects_are_the_loaders_texts_word_for_word(
    s3_client, bucket, loader, settings, body, text
):
    key = put_object(s3_client, bucket, HOUR, "browser_events", body)
    with pytest.raises(SourceFormatError) as raised:
        loader.load(settings.table("browser_events"), HOUR)
    found = str(raised.value).removeprefix(f"s3://{bucket}/{key}")
    assert found == text
    assert f"`{text}`" in (PROJECT_ROOT / "README.md").read_text(), "the README shows this text as it is"
