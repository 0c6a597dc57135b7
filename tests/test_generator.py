"""The synthetic source: layout, line alignment, value types, determinism, the hour-tail rule
and distributions, on local archives and on the real local S3 server."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from synthetic_clickstream import (
    BROWSERS,
    OPERATING_SYSTEMS,
    UTM_SOURCES,
    generate_hour,
    hour_volume,
    main,
    upload_hours,
    write_hour_archives,
)

from clickstream.config import Column, get_settings
from clickstream.records import RecordReader
from clickstream.source import member_name, object_key

HOUR = datetime(2024, 4, 10, 23, tzinfo=UTC)
PREVIOUS_HOUR = HOUR - timedelta(hours=1)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
LONG_RUN_PAGE_COUNTS = {
    "/home": 20202,
    "/product_a": 11503,
    "/product_b": 7571,
    "/cart": 5054,
    "/payment": 3364,
    "/confirmation": 2481,
}
BIG = 20_000
SETTINGS = get_settings()
TABLES = SETTINGS.table_names


def stamp(row: dict) -> datetime:
    return datetime.strptime(row["event_timestamp"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def archive_lines(archive: zipfile.ZipFile, table: str) -> list[str]:
    """Check the archive holds exactly one member ``<table>.jsonl`` and return its lines."""
    assert archive.namelist() == [member_name(table)]
    assert archive.testzip() is None
    info = archive.getinfo(member_name(table))
    assert info.compress_type == zipfile.ZIP_DEFLATED
    text = archive.read(info).decode("utf-8")
    assert text.endswith("\n")
    return text.splitlines()


def read_partition(paths: dict[str, Path]) -> dict[str, list[dict]]:
    partition = {}
    for table, path in paths.items():
        with zipfile.ZipFile(path) as archive:
            partition[table] = [json.loads(line) for line in archive_lines(archive, table)]
    return partition


def s3_bytes(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def big_partition(tmp_path_factory) -> dict[str, list[dict]]:
    """One partition of 20,000 page views, shared by the content tests."""
    paths = write_hour_archives(HOUR, BIG, 11, tmp_path_factory.mktemp("big"))
    return read_partition(paths)


@pytest.fixture(scope="module")
def two_partitions(tmp_path_factory) -> dict[datetime, dict[str, list[dict]]]:
    directory = tmp_path_factory.mktemp("two")
    partitions = {}
    for hour in (PREVIOUS_HOUR, HOUR):
        (directory / hour.strftime("%H")).mkdir()
        partitions[hour] = read_partition(
            write_hour_archives(hour, 2_000, 5, directory / hour.strftime("%H"))
        )
    return partitions


def clicks_of(partition: dict[str, list[dict]]) -> dict[str, list[int]]:
    lines = defaultdict(list)
    for number, row in enumerate(partition["browser_events"]):
        lines[row["click_id"]].append(number)
    return lines


# --- layout on the S3 server ---------------------------------------------------------------


def test_upload_writes_one_zip_per_table_and_hour_in_the_layout(s3_client, bucket, s3_connection):
    keys = upload_hours(s3_connection, bucket, HOUR, 2, 300, 7)

    template = SETTINGS.source.key_template
    expected = [
        object_key(template, hour, table) for hour in (HOUR, HOUR + timedelta(hours=1)) for table in TABLES
    ]
    assert keys == expected
    assert keys[0] == "year=2024/month=04/day=10/hour=23/browser_events.jsonl.zip"
    assert keys[-1] == "year=2024/month=04/day=11/hour=00/location_events.jsonl.zip"
    listed = s3_client.list_objects_v2(Bucket=bucket)
    assert sorted(item["Key"] for item in listed["Contents"]) == sorted(expected)
    for key in keys:
        table = key.rsplit("/", 1)[1].removesuffix(".jsonl.zip")
        with zipfile.ZipFile(io.BytesIO(s3_bytes(s3_client, bucket, key))) as archive:
            assert len(archive_lines(archive, table)) == 300


def test_upload_with_a_client_and_a_key_template(s3_client, bucket):
    keys = upload_hours(s3_client, bucket, HOUR, 1, 100, 7, key_template="synthetic/%Y%m%d%H/{table}.zip")

    assert keys == [f"synthetic/2024041023/{table}.zip" for table in TABLES]
    assert {item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"]} == set(keys)


def test_command_line_creates_the_bucket_and_uploads(s3_client, s3_connection, capsys):
    bucket = f"cli-{datetime.now(UTC):%H%M%S%f}"
    argv = ["--conn-id", s3_connection, "--bucket", bucket, "--start", "2024-04-10T23:00:00+00:00"]
    argv += ["--hours", "2", "--events-per-hour", "150", "--seed", "7", "--create-bucket"]

    assert main(argv) == 0

    keys = sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 8
    assert keys[0] == "year=2024/month=04/day=10/hour=23/browser_events.jsonl.zip"
    assert f"Wrote 8 objects to s3://{bucket}" in capsys.readouterr().out


# --- lines, keys and types -----------------------------------------------------------------


def test_every_table_holds_exactly_events_per_hour_lines(big_partition):
    assert {table: len(rows) for table, rows in big_partition.items()} == dict.fromkeys(TABLES, BIG)


@pytest.mark.parametrize(
    "events_per_hour",
    [pytest.param(100, id="100"), pytest.param(1_000, id="1000"), pytest.param(3_001, id="3001")],
)
def test_partition_size_is_exactly_events_per_hour(events_per_hour):
    assert sum(1 for _ in generate_hour(HOUR, events_per_hour, 3)) == events_per_hour


def test_lines_are_aligned_and_share_join_keys(big_partition):
    browser, device, geo, location = (big_partition[table] for table in TABLES)

    assert [row["event_id"] for row in browser] == [row["event_id"] for row in location]
    assert [row["click_id"] for row in browser] == [row["click_id"] for row in device]
    assert [row["click_id"] for row in browser] == [row["click_id"] for row in geo]
    assert len({row["event_id"] for row in browser}) == BIG


def test_keys_follow_the_configured_column_order(big_partition):
    for table in SETTINGS.tables:
        orders = {tuple(row) for row in big_partition[table.name]}
        assert orders == {table.column_names}


def test_values_have_the_types_of_the_real_source(big_partition):
    for row in big_partition["browser_events"]:
        assert uuid.UUID(row["event_id"]).version == 4
        assert uuid.UUID(row["click_id"]).version == 4
        assert TIMESTAMP.match(row["event_timestamp"])
        assert row["event_type"] == "pageview"
    for row in big_partition["device_events"]:
        assert row["device_is_mobile"] is (row["os_name"] in ("Android", "iOS"))
        assert row["device_type"] == ("Mobile" if row["device_is_mobile"] else "Computer")
        assert uuid.UUID(row["user_domain_id"]).version == 4
        assert re.fullmatch(r"user\d+@example\.(com|org)", row["user_custom_id"])
    for row in big_partition["geo_events"]:
        assert isinstance(row["geo_latitude"], str) and isinstance(row["geo_longitude"], str)
        assert -90 <= float(row["geo_latitude"]) <= 90 and -180 <= float(row["geo_longitude"]) <= 180
        assert len(row["ip_address"].split(".")) == 4
    for row in big_partition["location_events"]:
        assert row["page_url"] == f"http://www.dummywebsite.com{row['page_url_path']}"
        assert row["referer_url"] == f"www.{row['utm_source']}.com"
        assert row["referer_medium"] == ("search" if row["utm_source"] in ("google", "bing") else "internal")


def test_lines_parse_with_the_projects_typed_reader(big_partition):
    for table in SETTINGS.tables:
        reader = RecordReader(table)
        for number, row in enumerate(big_partition[table.name][:2_000], start=1):
            reader.parse(json.dumps(row), number)


def test_click_values_are_constant_within_a_click(big_partition):
    per_event = {"event_id", "event_timestamp", "page_url", "page_url_path"}
    for lines in clicks_of(big_partition).values():
        for table in TABLES:
            rows = big_partition[table]
            variants = {json.dumps({k: v for k, v in rows[n].items() if k not in per_event}) for n in lines}
            assert len(variants) == 1, (table, variants)
    users = defaultdict(set)
    for row in big_partition["device_events"]:
        users[row["user_domain_id"]].add(row["user_custom_id"])
    assert all(len(emails) == 1 for emails in users.values())


def test_a_click_moves_forward_in_time_and_changes_page_at_every_event(big_partition):
    browser, location = big_partition["browser_events"], big_partition["location_events"]
    gaps = []
    for lines in clicks_of(big_partition).values():
        times = [stamp(browser[n]) for n in lines]
        pages = [location[n]["page_url_path"] for n in lines]
        assert times == sorted(times)
        gaps += [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
        assert all(a != b for a, b in pairwise(pages))
        assert all(before == "/payment" for before, page in pairwise(pages) if page == "/confirmation")
    gaps.sort()
    assert gaps[0] > 0 and gaps[-1] <= 45 * 60
    assert 5 <= gaps[len(gaps) // 2] <= 300


# --- the hour-tail rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("late_fraction", "low", "high"),
    [
        pytest.param(0.25, 0.2, 0.26, id="default-quarter"),
        pytest.param(0.5, 0.44, 0.51, id="half"),
        pytest.param(0.0, 0.0, 0.0, id="no-tail"),
    ],
)
def test_partition_holds_a_tail_of_the_previous_hour(late_fraction, low, high):
    events = generate_hour(HOUR, 4_000, 9, late_fraction=late_fraction)
    stamps = [stamp({"event_timestamp": event.event_timestamp}) for event in events]

    previous = sum(1 for moment in stamps if moment < HOUR)
    assert low <= previous / len(stamps) <= high
    assert all(PREVIOUS_HOUR <= moment < HOUR + timedelta(hours=1) for moment in stamps)
    # without a tail only the page views stamped past their hour move, so the size drifts
    assert len(stamps) == 4_000 if late_fraction else abs(len(stamps) - 4_000) < 200


def test_default_partition_is_dominated_by_its_own_hour(big_partition):
    stamps = [stamp(row) for row in big_partition["browser_events"]]
    own = sum(1 for moment in stamps if moment >= HOUR)
    assert 0.72 <= own / BIG <= 0.8
    assert all(PREVIOUS_HOUR <= moment < HOUR + timedelta(hours=1) for moment in stamps)


def test_sessions_continue_into_the_next_partition(two_partitions):
    earlier, later = two_partitions[PREVIOUS_HOUR], two_partitions[HOUR]
    earlier_ids = {row["event_id"] for row in earlier["browser_events"]}
    later_ids = {row["event_id"] for row in later["browser_events"]}
    assert not earlier_ids & later_ids

    earlier_devices = {row["click_id"]: row for row in earlier["device_events"]}
    shared = [row for row in later["device_events"] if row["click_id"] in earlier_devices]
    assert len({row["click_id"] for row in shared}) >= 5
    assert all(earlier_devices[row["click_id"]] == row for row in shared)
    # the tail written late is the end of the previous hour, not a random sample of it
    tail = [stamp(row) for row in later["browser_events"] if stamp(row) < HOUR]
    assert tail and min(tail) >= PREVIOUS_HOUR + timedelta(minutes=30)


def test_an_hour_depends_only_on_the_seed_and_the_hour(s3_client, bucket):
    template = SETTINGS.source.key_template
    start = datetime(2024, 4, 11, 22, tzinfo=UTC)
    upload_hours(s3_client, bucket, start, 4, 200, 21, key_template="all/" + template)
    upload_hours(s3_client, bucket, start + timedelta(hours=2), 2, 200, 21, key_template="late/" + template)

    for offset in (2, 3):
        for table in TABLES:
            key = object_key(template, start + timedelta(hours=offset), table)
            assert s3_bytes(s3_client, bucket, "all/" + key) == s3_bytes(s3_client, bucket, "late/" + key)


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other_seed", "same"),
    [pytest.param(4, True, id="same-seed-same-bytes"), pytest.param(5, False, id="other-seed-other-bytes")],
)
def test_archives_are_a_function_of_the_seed(tmp_path, other_seed, same):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_hour_archives(HOUR, 500, 4, tmp_path / "a")
    second = write_hour_archives(HOUR, 500, other_seed, tmp_path / "b")

    for table in TABLES:
        assert (first[table].read_bytes() == second[table].read_bytes()) is same


# --- distributions -------------------------------------------------------------------------


def test_page_shares_follow_the_long_run_counts(big_partition):
    counts = Counter(row["page_url_path"] for row in big_partition["location_events"])
    total = sum(LONG_RUN_PAGE_COUNTS.values())
    for page, expected in LONG_RUN_PAGE_COUNTS.items():
        assert counts[page] / BIG == pytest.approx(expected / total, abs=0.015), page


@pytest.mark.parametrize(
    ("table", "column", "weights"),
    [
        pytest.param("location_events", "utm_source", UTM_SOURCES, id="utm_source"),
        pytest.param("browser_events", "browser_name", BROWSERS, id="browser_name"),
        pytest.param("device_events", "os_name", OPERATING_SYSTEMS, id="os_name"),
    ],
)
def test_click_attributes_follow_the_published_shares(big_partition, table, column, weights):
    first_lines = [lines[0] for lines in clicks_of(big_partition).values()]
    counts = Counter(big_partition[table][n][column] for n in first_lines)
    for value, share in weights.items():
        assert counts[value] / len(first_lines) == pytest.approx(share, abs=0.025), value


def test_device_type_follows_the_operating_system(big_partition):
    devices = big_partition["device_events"]
    mobile = sum(1 for row in devices if row["device_type"] == "Mobile") / len(devices)
    assert mobile == pytest.approx(0.7, abs=0.03)


def test_daily_curve_shapes_the_volume_only_when_asked():
    peak, trough = HOUR.replace(hour=18), HOUR.replace(hour=4)
    assert hour_volume(peak, 1_000) == hour_volume(trough, 1_000) == 1_000
    assert hour_volume(peak, 1_000, daily_curve=True) == 1_723
    assert hour_volume(trough, 1_000, daily_curve=True) == 120
    assert sum(
        hour_volume(HOUR.replace(hour=h), 1_000, daily_curve=True) for h in range(24)
    ) == pytest.approx(24_000, abs=12)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"window_start": HOUR.replace(tzinfo=None)}, "must carry a UTC offset", id="naive-hour"),
        pytest.param({"window_start": HOUR.replace(minute=30)}, "hour boundary", id="mid-hour"),
        pytest.param({"events_per_hour": 0}, "positive integer", id="no-events"),
        pytest.param({"late_fraction": 1.0}, "late_fraction", id="all-late"),
    ],
)
def test_bad_arguments_are_rejected(arguments, message):
    call = {"window_start": HOUR, "events_per_hour": 100, "seed": 1, **arguments}
    with pytest.raises(ValueError, match=message):
        next(generate_hour(**call))


def test_a_column_the_generator_cannot_fill_is_rejected(tmp_path):
    table = SETTINGS.table("geo_events")
    odd = replace(table, columns=(*table.columns, Column("geo_altitude", "Float64")))
    with pytest.raises(ValueError, match="geo_altitude"):
        write_hour_archives(HOUR, 100, 1, tmp_path, tables=[odd])
