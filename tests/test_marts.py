"""The purchase marts on the real engine (chdb), with data loaded through the ingest path.

Hand-built events (ZIP objects in a local S3 bucket, loaded by WindowLoader) with expected
rows computed by hand, whatever the chunk size; the real sample's published counts; a
sequence of loads, reloads, late and skipped windows and truncates, each refresh compared
with a full rebuild; the one commit that switches all five marts, the deletion of hidden
rows and of a dead refresh's rows; the parameterised views.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import local_stack
import pytest
from source_objects import put_sample_window, put_table

from clickstream.config import get_settings
from clickstream.loading import WindowLoader, ensure_schema
from clickstream.marts import (
    FULL,
    INCREMENTAL,
    MARTS,
    full_rebuild,
    merge_ranges,
    pending_changes,
    refresh,
    split_into_chunks,
    table_checksums,
)
from clickstream.source import SourceBucket
from clickstream.warehouse import ClickHouseHook

SITE = "http://www.dummywebsite.com"
W1 = datetime(2024, 4, 30, 23, tzinfo=UTC)  # last window of April
W2 = datetime(2024, 5, 1, 0, tzinfo=UTC)  # first window of May: another partition
W3 = datetime(2024, 5, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Click:
    """A visitor: its attributes are constant per click_id, as in the source."""

    name: str
    browser: str
    device_type: str | None  # None: no device row at all
    country: str
    region: str
    utm: tuple[str, str, str]  # source, medium, campaign

    @property
    def click_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"click-{self.name}"))

    @property
    def user_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"user-{self.name}"))


A = Click("A", "Chrome", "Mobile", "Russia", "Moscow", ("google", "cpc", "campaign_1"))
B = Click("B", "Firefox", "Computer", "Russia", "Moscow", ("facebook", "social", "campaign_2"))
C = Click("C", "Safari", None, "Germany", "Berlin", ("instagram", "organic", "campaign_1"))
D = Click("D", "Opera", "Computer", "France", "Paris", ("mailchimp", "affiliate", "campaign_1"))


@dataclass(frozen=True)
class Event:
    name: str
    click: Click
    timestamp: str
    path: str

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"event-{self.name}"))

    def lines(self) -> dict[str, str | None]:
        """The event's line in each of the four tables (None: the table has no line)."""
        click = self.click
        source, medium, campaign = click.utm
        device = None
        if click.device_type is not None:
            device = {
                "click_id": click.click_id,
                "os": "iOS 16",
                "os_name": "iOS",
                "os_timezone": "Europe/Moscow",
                "device_type": click.device_type,
                "device_is_mobile": click.device_type == "Mobile",
                "user_custom_id": f"{click.name.lower()}@example.com",
                "user_domain_id": click.user_id,
            }
        return {
            "browser_events": json.dumps(
                {
                    "event_id": self.event_id,
                    "event_timestamp": self.timestamp,
                    "event_type": "pageview",
                    "click_id": click.click_id,
                    "browser_name": click.browser,
                    "browser_user_agent": "Mozilla/5.0",
                    "browser_language": "en_US",
                }
            ),
            "device_events": json.dumps(device) if device else None,
            "geo_events": json.dumps(
                {
                    "click_id": click.click_id,
                    "geo_latitude": "55.75",
                    "geo_longitude": "37.61",
                    "geo_country": click.country,
                    "geo_timezone": "Europe/Moscow",
                    "geo_region_name": click.region,
                    "ip_address": "10.0.0.1",
                }
            ),
            "location_events": json.dumps(
                {
                    "event_id": self.event_id,
                    "page_url": SITE + self.path,
                    "page_url_path": self.path,
                    "referer_url": f"www.{source}.com",
                    "referer_medium": "internal",
                    "utm_medium": medium,
                    "utm_source": source,
                    "utm_content": "ad_1",
                    "utm_campaign": campaign,
                }
            ),
        }


# Click A: a purchase with no earlier purchase (A5), then a second one (A9) whose journey
# starts after A5. A1 is stamped 22:xx but arrives in the 23:00 window. A7 arrives again in W3.
A1 = Event("A1", A, "2024-04-30 22:50:00.000001", "/home")
A2 = Event("A2", A, "2024-04-30 23:10:00.000000", "/product_a")
A3 = Event("A3", A, "2024-04-30 23:20:00.000000", "/cart")
A4 = Event("A4", A, "2024-04-30 23:30:00.000000", "/payment")
A5 = Event("A5", A, "2024-04-30 23:40:00.000000", "/confirmation")
A6 = Event("A6", A, "2024-05-01 00:10:00.000000", "/product_b")
A7 = Event("A7", A, "2024-05-01 00:20:00.000000", "/home")
A8 = Event("A8", A, "2024-05-01 00:30:00.000000", "/payment")
A9 = Event("A9", A, "2024-05-01 00:40:00.000000", "/confirmation")
# Click B: a journey crossing an hour and a partition (month) boundary; /home seen twice.
B1 = Event("B1", B, "2024-04-30 23:50:00.000000", "/product_a")
B2 = Event("B2", B, "2024-05-01 00:05:00.000000", "/home")
B3 = Event("B3", B, "2024-05-01 00:06:00.000000", "/home")
B4 = Event("B4", B, "2024-05-01 00:07:00.000000", "/confirmation")
# Click C: no device row (empty device_type, no user).
C1 = Event("C1", C, "2024-05-01 00:15:00.000000", "/home")
C2 = Event("C2", C, "2024-05-01 00:16:00.000000", "/confirmation")
D1 = Event("D1", D, "2024-05-01 01:05:00.000000", "/home")

WINDOWS = {
    W1: [A1, A2, A3, A4, A5, B1],
    W2: [A6, A7, A8, A9, B2, B3, B4, C1, C2],
    W3: [A7, D1],
}


def put_window(s3_client, bucket: str, window_start: datetime, events: list[Event]) -> None:
    """Write the four objects of a window, line-aligned, as the source does."""
    for table in get_settings().table_names:
        lines = [line for event in events if (line := event.lines()[table]) is not None]
        put_table(s3_client, bucket, window_start, table, lines)


@pytest.fixture
def settings(bucket):
    base = get_settings()
    return replace(base, source=replace(base.source, bucket=bucket))


@pytest.fixture
def hook(chdb_path):
    with ClickHouseHook() as opened:
        yield opened


@pytest.fixture
def load(hook, settings, s3_connection):
    """Load a window of every table through the ingest path."""
    ensure_schema(hook, settings)
    loader = WindowLoader(hook, SourceBucket(s3_connection, settings.source.bucket), settings)

    def load_window(window_start: datetime) -> None:
        for table in settings.tables:
            loader.load(table, window_start)

    return load_window


def rows(hook: ClickHouseHook, settings, query: str) -> list[list]:
    """Rows of a test query; ``{db}`` is the configured database."""
    return hook.backend.execute(query.format(db=settings.warehouse.database), {})


def hourly_events(hook, settings) -> set[tuple]:
    found = rows(
        hook,
        settings,
        "SELECT toString(hour), page_url_path, browser_name, device_type, events FROM {db}.mart_hourly_events",
    )
    return {tuple(row) for row in found}


def leading_pages(hook, settings) -> set[tuple]:
    found = rows(
        hook,
        settings,
        "SELECT toString(hour), page_url, browser_name, device_type, purchases FROM {db}.mart_leading_pages",
    )
    return {tuple(row) for row in found}


def by_source(hook, settings, mart: str, measure: str, users: str) -> set[tuple]:
    found = rows(
        hook,
        settings,
        f"SELECT toString(hour), utm_source, utm_medium, utm_campaign, {measure}, "
        f"finalizeAggregation({users}) FROM {{db}}.{mart}",
    )
    return {tuple(row) for row in found}


def by_region(hook, settings) -> set[tuple]:
    found = rows(
        hook,
        settings,
        "SELECT toString(hour), geo_country, geo_region_name, purchases, finalizeAggregation(buyers) "
        "FROM {db}.mart_purchases_by_region",
    )
    return {tuple(row) for row in found}


def assert_equals_full_rebuild(hook, settings) -> None:
    incremental = table_checksums(hook, settings)
    full_rebuild(hook, settings)
    assert table_checksums(hook, settings) == incremental


H22, H23 = "2024-04-30 22:00:00", "2024-04-30 23:00:00"
H00, H01 = "2024-05-01 00:00:00", "2024-05-01 01:00:00"
CM, FC, SN, OC = ("Chrome", "Mobile"), ("Firefox", "Computer"), ("Safari", ""), ("Opera", "Computer")


@pytest.fixture
def hand_built(s3_client, bucket, load):
    for window_start, events in WINDOWS.items():
        put_window(s3_client, bucket, window_start, events)
        load(window_start)


def assert_hand_computed_marts(hook, settings) -> None:
    """The marts of the three hand-built windows, computed by hand."""
    assert hourly_events(hook, settings) == {
        (H22, "/home", *CM, 1),  # A1: stamped 22:xx, arrived in the 23:00 window
        (H23, "/product_a", *CM, 1),
        (H23, "/cart", *CM, 1),
        (H23, "/payment", *CM, 1),
        (H23, "/confirmation", *CM, 1),
        (H23, "/product_a", *FC, 1),
        (H00, "/product_b", *CM, 1),
        (H00, "/home", *CM, 1),  # A7 is in W2 and W3: counted once
        (H00, "/payment", *CM, 1),
        (H00, "/confirmation", *CM, 1),
        (H00, "/home", *FC, 2),
        (H00, "/confirmation", *FC, 1),
        (H00, "/home", *SN, 1),  # click C has no device row: empty device_type
        (H00, "/confirmation", *SN, 1),
        (H01, "/home", *OC, 1),
    }
    assert leading_pages(hook, settings) == {
        # A5, no earlier purchase: A1..A4 minus the checkout pages /cart and /payment.
        (H23, SITE + "/home", *CM, 1),
        (H23, SITE + "/product_a", *CM, 1),
        # A9: the journey starts after A5, so /product_a of A2 is not in it.
        (H00, SITE + "/product_b", *CM, 1),
        (H00, SITE + "/home", *CM, 1),
        # B4: the journey crosses the hour and the month; /home seen twice counts once.
        (H00, SITE + "/product_a", *FC, 1),
        (H00, SITE + "/home", *FC, 1),
        (H00, SITE + "/home", *SN, 1),
    }
    assert by_source(hook, settings, "mart_purchases_by_source", "purchases", "buyers") == {
        (H23, "google", "cpc", "campaign_1", 1, 1),
        (H00, "google", "cpc", "campaign_1", 1, 1),
        (H00, "facebook", "social", "campaign_2", 1, 1),
        (H00, "instagram", "organic", "campaign_1", 1, 0),  # no device row: no known buyer
    }
    assert by_source(hook, settings, "mart_users_by_source", "events", "users") == {
        (H22, "google", "cpc", "campaign_1", 1, 1),
        (H23, "google", "cpc", "campaign_1", 4, 1),
        (H23, "facebook", "social", "campaign_2", 1, 1),
        (H00, "google", "cpc", "campaign_1", 4, 1),
        (H00, "facebook", "social", "campaign_2", 3, 1),
        (H00, "instagram", "organic", "campaign_1", 2, 0),
        (H01, "mailchimp", "affiliate", "campaign_1", 1, 1),
    }
    assert by_region(hook, settings) == {
        (H23, "Russia", "Moscow", 1, 1),
        (H00, "Russia", "Moscow", 2, 2),
        (H00, "Germany", "Berlin", 1, 0),
    }


@pytest.mark.parametrize(
    "chunk_hours",
    [
        # One hour per chunk: B4's journey crosses two chunks and the month (partition)
        # boundary; A1 (22:xx, in the 23:00 window) is staged by another chunk than A5.
        pytest.param(1, id="one-hour-chunks"),
        pytest.param(2, id="two-hour-chunks"),
        pytest.param(48, id="one-chunk"),
    ],
)
def test_hand_built_events_give_hand_computed_marts(hand_built, hook, settings, chunk_hours):
    settings = replace(settings, marts=replace(settings.marts, chunk_hours=chunk_hours))

    result = refresh(hook, settings)

    assert result.mode == FULL
    assert result.loads_applied == 12
    # Events from 22:xx to 01:xx: four hours, one chunk per chunk_hours of them.
    assert (result.hours, result.chunks) == (4, -(-4 // chunk_hours))
    assert_hand_computed_marts(hook, settings)
    assert_equals_full_rebuild(hook, settings)


def test_parameterised_views_answer_for_a_range(hand_built, hook, settings):
    refresh(hook, settings)

    def view(name: str, start: str, end: str) -> list[list]:
        return rows(hook, settings, f"SELECT * FROM {{db}}.{name}(from_hour = '{start}', to_hour = '{end}')")

    everything = ("2024-04-30 00:00:00", "2024-05-02 00:00:00")
    assert view("top_leading_pages", *everything) == [
        [SITE + "/home", 4],
        [SITE + "/product_a", 2],
        [SITE + "/product_b", 1],
    ]
    assert view("top_leading_pages", H00, "2024-05-02 00:00:00") == [
        [SITE + "/home", 3],
        [SITE + "/product_a", 1],
        [SITE + "/product_b", 1],
    ]
    assert view("top_leading_pages_by_browser_device", *everything) == [
        ["Chrome", "Mobile", SITE + "/home", 2],
        ["Chrome", "Mobile", SITE + "/product_a", 1],
        ["Chrome", "Mobile", SITE + "/product_b", 1],
        ["Firefox", "Computer", SITE + "/home", 1],
        ["Firefox", "Computer", SITE + "/product_a", 1],
        ["Safari", "", SITE + "/home", 1],
    ]
    assert view("top_regions_by_purchases", *everything) == [
        ["Russia", "Moscow", 3, 2],
        ["Germany", "Berlin", 1, 0],
    ]
    assert view("purchases_by_source_campaign", *everything) == [
        ["google", "campaign_1", 2, 1],
        ["facebook", "campaign_2", 1, 1],
        ["instagram", "campaign_1", 1, 0],
    ]
    assert view("users_share_by_source", *everything) == [
        ["facebook", 1, 3, pytest.approx(1 / 3)],
        ["google", 1, 3, pytest.approx(1 / 3)],
        ["mailchimp", 1, 3, pytest.approx(1 / 3)],
        ["instagram", 0, 3, 0],
    ]
    assert view("top_regions_by_purchases", H01, "2024-05-02 00:00:00") == []


def test_new_window_recomputes_only_the_hours_it_touches(s3_client, bucket, load, hook, settings):
    for window_start in (W1, W2):
        put_window(s3_client, bucket, window_start, WINDOWS[window_start])
        load(window_start)
    assert refresh(hook, settings).mode == FULL
    before = hourly_events(hook, settings)
    put_window(s3_client, bucket, W3, WINDOWS[W3])
    load(W3)

    pending = pending_changes(hook, settings)
    result = refresh(hook, settings)

    # W3's events span 00:20 (A7 again) .. 01:05: hours [00:00, 01:00 + 1 h + 24 h).
    assert pending.ranges == ((H00, "2024-05-02 02:00:00"),)
    assert (result.mode, result.hours, result.loads_applied) == (INCREMENTAL, 26, 4)
    assert hourly_events(hook, settings) == before | {(H01, "/home", *OC, 1)}
    assert (refresh(hook, settings).loads_applied, refresh(hook, settings).hours) == (0, 0)
    assert_equals_full_rebuild(hook, settings)


def test_reload_with_changed_content_equals_a_full_rebuild(
    hand_built, s3_client, bucket, load, hook, settings
):
    refresh(hook, settings)
    # W2 again: B4 (a purchase) and C1 removed, a new purchase of D added.
    d2 = Event("D2", D, "2024-05-01 00:55:00.000000", "/confirmation")
    put_window(s3_client, bucket, W2, [A6, A7, A8, A9, B2, B3, C2, d2])
    load(W2)

    result = refresh(hook, settings)

    assert result.mode == INCREMENTAL
    assert result.ranges == [[H00, "2024-05-02 01:00:00"]]
    assert result.loads_applied == 4
    assert (H00, SITE + "/product_a", *FC, 1) not in leading_pages(hook, settings)
    assert (H00, "/home", *SN, 1) not in hourly_events(hook, settings)
    assert (H00, "/confirmation", *OC, 1) in hourly_events(hook, settings)
    assert (H23, "/product_a", *FC, 1) in hourly_events(hook, settings)  # B1 untouched
    assert_equals_full_rebuild(hook, settings)

    # Reload W1 with more lines: a new event of B before its purchase in W2.
    b0 = Event("B0", B, "2024-04-30 23:55:00.000000", "/product_b")
    put_window(s3_client, bucket, W1, [*WINDOWS[W1], b0])
    load(W1)
    result = refresh(hook, settings)
    assert result.ranges == [[H22, "2024-05-02 00:00:00"]]
    assert (H23, "/product_b", *FC, 1) in hourly_events(hook, settings)
    assert_equals_full_rebuild(hook, settings)


def test_empty_watermark_means_full_rebuild(hand_built, hook, settings):
    first = refresh(hook, settings)
    checksums = table_checksums(hook, settings)
    rows(hook, settings, "TRUNCATE TABLE {db}.marts_applied_loads")

    again = refresh(hook, settings)

    assert (first.mode, again.mode) == (FULL, FULL)
    assert again.loads_applied == 12
    assert table_checksums(hook, settings) == checksums
    assert set(checksums) == set(MARTS)


def test_real_sample_gives_its_published_counts(sample_dir, s3_client, bucket, load, hook, settings):
    window = datetime(2022, 11, 28, 21, tzinfo=UTC)
    put_sample_window(s3_client, bucket, window, sample_dir)
    load(window)

    refresh(hook, settings)

    def totals(query: str) -> dict:
        return dict(rows(hook, settings, query))

    assert totals("SELECT toString(hour), sum(events) FROM {db}.mart_hourly_events GROUP BY hour") == {
        "2022-11-28 20:00:00": 256,
        "2022-11-28 21:00:00": 744,
    }
    assert totals("SELECT page_url_path, sum(events) FROM {db}.mart_hourly_events GROUP BY 1") == {
        "/home": 426,
        "/product_a": 236,
        "/product_b": 157,
        "/cart": 93,
        "/payment": 53,
        "/confirmation": 35,
    }
    assert totals("SELECT browser_name, sum(events) FROM {db}.mart_hourly_events GROUP BY 1") == {
        "Chrome": 439,
        "Firefox": 373,
        "Safari": 83,
        "Opera": 82,
        "InternetExplorer": 23,
    }
    assert totals("SELECT device_type, sum(events) FROM {db}.mart_hourly_events GROUP BY 1") == {
        "Mobile": 672,
        "Computer": 328,
    }
    assert totals("SELECT utm_source, sum(events) FROM {db}.mart_users_by_source GROUP BY 1") == {
        "instagram": 269,
        "facebook": 266,
        "mailchimp": 230,
        "google": 206,
        "bing": 29,
    }
    assert rows(hook, settings, "SELECT sum(purchases) FROM {db}.mart_purchases_by_source") == [[35]]
    assert rows(hook, settings, "SELECT sum(purchases) FROM {db}.mart_purchases_by_region") == [[35]]
    # Leading pages never include a checkout path.
    pages = totals("SELECT page_url, sum(purchases) FROM {db}.mart_leading_pages GROUP BY 1")
    assert pages and not any(url.endswith(("/cart", "/payment", "/confirmation")) for url in pages)
    assert_equals_full_rebuild(hook, settings)


def test_merge_ranges_joins_overlapping_and_adjacent_ranges():
    assert merge_ranges([("b", "d"), ("a", "b"), ("f", "g"), ("c", "e")]) == (("a", "e"), ("f", "g"))
    assert merge_ranges([]) == ()


WORKING_TABLES = (
    "SELECT name FROM system.tables WHERE database = '{db}' "
    "AND (startsWith(name, 'marts_claimed_commits_') OR startsWith(name, 'marts_events_stage_'))"
)


def test_crash_before_the_watermark_is_recomputed_next_time(
    hand_built, s3_client, bucket, load, hook, settings, monkeypatch
):
    from clickstream import marts

    refresh(hook, settings)
    put_window(s3_client, bucket, W2, [A6, A7, A8, A9, C1, C2])
    load(W2)

    def crash(*args, **kwargs):
        raise RuntimeError("killed between the commit and the watermark")

    with monkeypatch.context() as patched:
        patched.setattr(marts, "_apply", crash)
        with pytest.raises(RuntimeError):
            refresh(hook, settings)

    again = refresh(hook, settings)

    assert (again.mode, again.loads_applied) == (INCREMENTAL, 4)
    assert again.ranges == [[H00, "2024-05-02 01:00:00"]]
    assert rows(hook, settings, WORKING_TABLES) == [], "each refresh drops its working tables, failing or not"
    assert_equals_full_rebuild(hook, settings)


def test_refresh_warehouse_opens_the_configured_warehouse(chdb_path, settings):
    from clickstream.marts import refresh_warehouse

    result = refresh_warehouse(settings)

    assert result == {**result, "mode": FULL, "loads_applied": 0, "ranges": []}
    assert json.loads(json.dumps(result)) == result


SNAPSHOT_READER = """
import json, sys
from pathlib import Path
from clickstream.config import get_settings
from clickstream.marts import attach_snapshot, table_checksums
from clickstream.warehouse import ClickHouseHook
with ClickHouseHook() as hook:
    attach_snapshot(hook, get_settings(), Path(sys.argv[1]))
    print(json.dumps(table_checksums(hook, get_settings())))
"""


def read_snapshot_in_another_process(snapshot_dir, reader_path) -> dict[str, str]:
    """The marts' checksums as a reader in a process of its own, on its own chdb, sees them."""
    env = {**os.environ, "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": local_stack.chdb_connection_uri(reader_path)}
    completed = subprocess.run(
        [sys.executable, "-c", SNAPSHOT_READER, str(snapshot_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_readers_in_another_process_see_what_the_marts_show_after_each_refresh_and_truncate(
    tmp_path, chdb_path, settings, s3_client, bucket, s3_connection, sample_dir, monkeypatch
):
    from clickstream.marts import publish_snapshot, refresh_warehouse
    from clickstream.truncate import truncate_warehouse

    snapshots = tmp_path / "snapshots"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT", local_stack.chdb_connection_uri(chdb_path, snapshots)
    )
    window = datetime(2022, 11, 28, 21, tzinfo=UTC)  # where the sample's stamps are
    put_sample_window(s3_client, bucket, window, sample_dir)
    with ClickHouseHook() as writer:
        ensure_schema(writer, settings)
        loader = WindowLoader(writer, SourceBucket(s3_connection, settings.source.bucket), settings)
        for table in settings.tables:
            loader.load(table, window)
    refresh_warehouse(settings)
    with ClickHouseHook() as writer:
        first = table_checksums(writer, settings)
    assert all(not value.startswith("0:") for value in first.values()), first

    assert read_snapshot_in_another_process(snapshots, tmp_path / "reader") == first

    # Each publication is a new folder behind one link: the reader follows it, and only the
    # newest two stay.
    truncate_warehouse(settings, settings.warehouse.database, "marts", dry_run=False)
    with ClickHouseHook() as writer:
        publish_snapshot(writer, settings)
        emptied = table_checksums(writer, settings)
    assert all(value.startswith("0:") for value in emptied.values()), emptied
    assert read_snapshot_in_another_process(snapshots, tmp_path / "reader") == emptied
    assert len(list(snapshots.glob("marts-*"))) == 2
    refresh_warehouse(settings)
    assert read_snapshot_in_another_process(snapshots, tmp_path / "reader") == first


# --- chunks, late and skipped windows: the invariant over a sequence -------------------------

# Click E lands in history: its window WL comes two days after its events (stamped on
# 29 April), and WH, a window of that day loaded later, holds E's next purchase, whose
# journey starts after E3, a purchase that only WL holds.
E = Click("E", "Chrome", "Computer", "Spain", "Madrid", ("bing", "cpc", "campaign_2"))
E1 = Event("E1", E, "2024-04-29 10:05:00.000000", "/home")
E2 = Event("E2", E, "2024-04-29 10:15:00.000000", "/product_a")
E3 = Event("E3", E, "2024-04-29 10:25:00.000000", "/confirmation")
E4 = Event("E4", E, "2024-04-29 10:55:00.000000", "/product_b")
E5 = Event("E5", E, "2024-04-29 11:05:00.000000", "/confirmation")
WL = datetime(2024, 5, 1, 2, tzinfo=UTC)
WH = datetime(2024, 4, 29, 11, tzinfo=UTC)
WS = datetime(2024, 5, 1, 3, tzinfo=UTC)  # never written: skipped
WE = datetime(2024, 5, 1, 4, tzinfo=UTC)  # four objects without a line


def delete_window(s3_client, bucket: str, window_start: datetime) -> None:
    """Remove the four objects of a window from the bucket."""
    from clickstream.source import object_key

    template = get_settings().source.key_template
    for table in get_settings().table_names:
        s3_client.delete_object(Bucket=bucket, Key=object_key(template, window_start, table))


def test_every_refresh_of_a_sequence_equals_a_full_rebuild(s3_client, bucket, hook, settings, s3_connection):
    # Two-hour chunks with a 24-hour look-back: every refresh below spans several chunks,
    # and W1/W2 lie in two partitions (April and May).
    settings = replace(
        settings,
        marts=replace(settings.marts, chunk_hours=2),
        source=replace(settings.source, absent_object_outcome="skip"),
    )
    # The same raw data in a second database, rebuilt in full after every step.
    reference = replace(settings, warehouse=replace(settings.warehouse, database="clickstream_reference"))
    loaders = []
    for target in (settings, reference):
        ensure_schema(hook, target)
        loaders.append(WindowLoader(hook, SourceBucket(s3_connection, bucket), target))

    def load(*windows: datetime) -> None:
        for window_start in windows:
            for loader in loaders:
                for table in settings.tables:
                    loader.load(table, window_start)

    def skip(window_start: datetime) -> None:
        """Resolve a window whose objects are absent past the lateness horizon: skipped."""
        for loader in loaders:
            loader.record_absent([(table, window_start) for table in settings.tables], now=datetime.now(UTC))

    def refreshed():
        result = refresh(hook, settings)
        full_rebuild(hook, reference)
        assert table_checksums(hook, settings) == table_checksums(hook, reference)
        assert all(start >= "2024-04-01" for start, _ in result.ranges), result.ranges  # no 1970
        return result

    for window_start, events in WINDOWS.items():
        put_window(s3_client, bucket, window_start, events)
    load(W1, W2)
    assert refreshed().mode == FULL

    load(W3)
    assert refreshed().chunks == 13  # [00:00, 02:00 next day): 26 hours

    # The late window and a reload of W3 in one refresh: two ranges far apart.
    put_window(s3_client, bucket, WL, [E1, E2, E3])
    load(WL, W3)
    late = refreshed()
    assert late.ranges == [["2024-04-29 10:00:00", "2024-04-30 11:00:00"], [H00, "2024-05-02 02:00:00"]]
    assert (H23, "/confirmation", *CM, 1) in hourly_events(hook, settings)
    assert ("2024-04-29 10:00:00", "/confirmation", "Chrome", "Computer", 1) in hourly_events(hook, settings)

    # WH, loaded later, recomputes 29 April, whose events are in WL: found through the
    # hour index, E3 ends E5's journey, so /home and /product_a of E1, E2 do not lead to E5.
    put_window(s3_client, bucket, WH, [E4, E5])
    load(WH)
    refreshed()
    assert ("2024-04-29 11:00:00", SITE + "/product_b", "Chrome", "Computer", 1) in leading_pages(
        hook, settings
    )
    assert ("2024-04-29 11:00:00", SITE + "/home", "Chrome", "Computer", 1) not in leading_pages(
        hook, settings
    )

    # A reload that removes rows: B4 (a purchase) and C1 leave W2.
    put_window(s3_client, bucket, W2, [A6, A7, A8, A9, B2, B3, C2])
    load(W2)
    refreshed()
    assert (H00, "/home", *SN, 1) not in hourly_events(hook, settings)

    # A skipped window: four commits, no events, nothing to recompute (no 1970 range).
    skip(WS)
    skipped = refreshed()
    assert (skipped.loads_applied, skipped.ranges, skipped.hours, skipped.version) == (4, [], 0, 0)

    # A window whose objects hold no line: loaded, but no event time either.
    put_window(s3_client, bucket, WE, [])
    load(WE)
    empty = refreshed()
    assert (empty.loads_applied, empty.ranges, empty.hours, empty.version) == (4, [], 0, 0)

    # W1 reloaded as skipped (its objects are gone): its events leave the marts; the hours
    # come from its earlier load.
    delete_window(s3_client, bucket, W1)
    skip(W1)
    emptied = refreshed()
    assert emptied.ranges == [[H22, "2024-05-02 00:00:00"]]
    assert {row[0] for row in hourly_events(hook, settings)} == {
        "2024-04-29 10:00:00",
        "2024-04-29 11:00:00",
        H00,
        H01,
    }

    assert (refreshed().loads_applied, refreshed().hours) == (0, 0)

    from clickstream import truncate

    truncate.truncate(hook, settings, "marts", dry_run=False)
    assert refreshed().mode == FULL


def test_one_commit_row_switches_all_five_marts(
    hand_built, s3_client, bucket, load, hook, settings, monkeypatch
):
    from clickstream import marts

    refresh(hook, settings)
    before = table_checksums(hook, settings)
    put_window(s3_client, bucket, W2, [A6, A7, A8, A9, B2, B3, C2])
    load(W2)
    seen = {}
    record = marts._record

    def observed(hook_, settings_, version, status, *args, **kwargs):
        if status == marts.COMMITTED:
            seen["written, not committed"] = table_checksums(hook_, settings_)
            record(hook_, settings_, version, status, *args, **kwargs)
            seen["committed"] = table_checksums(hook_, settings_)
        else:
            record(hook_, settings_, version, status, *args, **kwargs)

    monkeypatch.setattr(marts, "_record", observed)
    refresh(hook, settings)

    # Every mart's rows are written before the commit row, and none shows until it lands;
    # then all five show the new rows at once.
    assert seen["written, not committed"] == before
    assert all(seen["committed"][mart] != before[mart] for mart in MARTS)
    assert seen["committed"] == table_checksums(hook, settings)


def storage_rows(hook, settings, mart: str, where: str = "1") -> int:
    return int(rows(hook, settings, f"SELECT count() FROM {{db}}.{mart}_versions WHERE {where}")[0][0])


def visible_rows(hook, settings, mart: str) -> int:
    return int(rows(hook, settings, f"SELECT count() FROM {{db}}.{mart}")[0][0])


def test_rows_a_commit_hides_are_deleted_by_the_next_refresh(hand_built, load, hook, settings):
    refresh(hook, settings)
    load(W3)
    second = refresh(hook, settings)

    # The rows the second commit hid are still stored, for queries begun before it.
    hidden_by_second = {
        mart: storage_rows(hook, settings, mart, f"hour >= '{H00}' AND version < {second.version}")
        for mart in MARTS
    }
    assert all(hidden_by_second.values()), hidden_by_second
    for mart in MARTS:
        assert (
            storage_rows(hook, settings, mart) == visible_rows(hook, settings, mart) + hidden_by_second[mart]
        )

    load(W3)
    third = refresh(hook, settings)

    # Now only the rows the third commit hid are kept besides the visible ones, and the
    # versions table holds the settled second version and the third.
    for mart in MARTS:
        hidden_by_third = storage_rows(hook, settings, mart, f"hour >= '{H00}' AND version < {third.version}")
        assert storage_rows(hook, settings, mart) == visible_rows(hook, settings, mart) + hidden_by_third
    assert rows(
        hook, settings, "SELECT toString(version), status FROM {db}.marts_versions ORDER BY 1, 2"
    ) == [
        [str(second.version), "settled"],
        [str(third.version), "committed"],
        [str(third.version), "started"],  # when it was taken, before the refresh read anything
        [str(third.version), "started"],  # with its hours, before its rows were written
    ]
    assert_equals_full_rebuild(hook, settings)


def _refresh_that_stops_before_its_commit(
    s3_client, bucket, load, hook, settings, monkeypatch, killed: bool
) -> str:
    """Over the hand-built windows, refresh, load W3 again, then run a refresh that stops at
    its commit and return its version, checking that readers still see the first refresh.
    ``killed``: it also cannot record itself abandoned nor drop its working tables, as when
    its process dies."""
    from clickstream import marts

    refresh(hook, settings)
    before = table_checksums(hook, settings)
    put_window(s3_client, bucket, W3, [D1])
    load(W3)

    record = marts._record

    def stop_at_commit(hook_, settings_, version, status, *args, **kwargs):
        if status == marts.COMMITTED or (killed and status == marts.ABANDONED):
            raise RuntimeError("stopped before the commit")
        record(hook_, settings_, version, status, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(marts, "_record", stop_at_commit)
        if killed:
            patched.setattr(marts, "_drop_working_table", lambda *args: None)
        with pytest.raises(RuntimeError, match="stopped before the commit"):
            refresh(hook, settings)
    [[stopped]] = rows(
        hook, settings, "SELECT toString(max(version)) FROM {db}.marts_versions WHERE status = 'started'"
    )
    assert table_checksums(hook, settings) == before
    return stopped


def test_rows_of_a_refresh_that_failed_before_its_commit_stay_hidden_and_the_next_deletes_them(
    hand_built, s3_client, bucket, load, hook, settings, monkeypatch
):
    failed = _refresh_that_stops_before_its_commit(
        s3_client, bucket, load, hook, settings, monkeypatch, killed=False
    )

    assert storage_rows(hook, settings, "mart_hourly_events", f"version = {failed}") > 0
    assert rows(hook, settings, WORKING_TABLES) == [], "a failing refresh drops its working tables"

    again = refresh(hook, settings)

    assert (again.mode, again.loads_applied) == (INCREMENTAL, 4)
    assert all(storage_rows(hook, settings, mart, f"version = {failed}") == 0 for mart in MARTS)
    assert_equals_full_rebuild(hook, settings)


def test_rows_of_a_refresh_killed_before_its_commit_are_deleted_once_it_is_twice_its_deadline_old(
    hand_built, s3_client, bucket, load, hook, settings, monkeypatch, warehouse_clock
):
    killed = _refresh_that_stops_before_its_commit(
        s3_client, bucket, load, hook, settings, monkeypatch, killed=True
    )

    again = refresh(hook, settings)

    assert (again.mode, again.loads_applied) == (INCREMENTAL, 4)
    # Within twice the deadline the version might be a refresh that is still writing.
    assert storage_rows(hook, settings, "mart_hourly_events", f"version = {killed}") > 0
    assert len(rows(hook, settings, WORKING_TABLES)) == 2, "the killed refresh's claimed commits and stage"

    warehouse_clock["by"] = timedelta(seconds=2 * settings.marts.refresh_deadline_seconds + 60)
    load(W3)
    refresh(hook, settings)

    assert all(storage_rows(hook, settings, mart, f"version = {killed}") == 0 for mart in MARTS)
    assert rows(hook, settings, WORKING_TABLES) == [], "the killed refresh's working tables are dropped"
    assert_equals_full_rebuild(hook, settings)


def test_only_commit_rows_enter_the_marts_queue(hand_built, hook, settings):
    refresh(hook, settings)
    for status in ("failed", "missing", "started"):
        hook.run(
            "insert_ingest_log",
            {
                "database": settings.warehouse.database,
                "load_id": str(uuid.uuid4()),
                "table_name": "browser_events",
                "window_start": "2024-05-01 05:00:00",
                "status": status,
                "source_bucket": settings.source.bucket,
                "source_key": "year=2024/month=05/day=01/hour=05/browser_events.jsonl.zip",
                "source_etag": "",
                "source_bytes": 0,
                "rows": 0,
                "min_event_time": "",
                "max_event_time": "",
                "started_at": "2024-05-01 06:00:00.000000",
                "duration_ms": 1000,
                "error": "",
                "dag_run_id": "test",
                "try_number": 1,
            },
        )

    assert pending_changes(hook, settings).changes == ()
    result = refresh(hook, settings)
    assert (result.loads_applied, result.version) == (0, 0)


def test_marts_of_the_earlier_layout_are_replaced_and_rebuilt(hand_built, hook, settings):
    database = settings.warehouse.database
    execute = hook.backend.execute
    # The layout before versioned rows: each mart a plain table, and a filled watermark.
    execute(
        f"CREATE TABLE {database}.mart_hourly_events (hour DateTime('UTC'), page_url_path String, "
        "browser_name String, device_type String, events UInt64) ENGINE = MergeTree ORDER BY hour",
        {},
    )
    execute(
        f"INSERT INTO {database}.mart_hourly_events VALUES ('2024-01-01 00:00:00', '/old', 'x', 'y', 9)", {}
    )
    execute(
        f"CREATE TABLE {database}.marts_applied_loads (load_id UUID, table_name LowCardinality(String), "
        "window_start DateTime('UTC'), applied_at DateTime64(6, 'UTC')) "
        "ENGINE = MergeTree ORDER BY (table_name, window_start, load_id)",
        {},
    )
    execute(
        f"INSERT INTO {database}.marts_applied_loads SELECT load_id, table_name, window_start, now64() FROM {database}.ingest_log",
        {},
    )

    result = refresh(hook, settings)

    assert result.mode == FULL
    [[engine]] = rows(
        hook,
        settings,
        "SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'mart_hourly_events'",
    )
    assert engine == "View"
    assert_hand_computed_marts(hook, settings)


def test_split_into_chunks_cuts_long_ranges_and_packs_short_ones():
    day = "2024-05-01 "
    assert split_into_chunks([(day + "00:00:00", day + "05:00:00")], 2) == [
        ((day + "00:00:00", day + "02:00:00"),),
        ((day + "02:00:00", day + "04:00:00"),),
        ((day + "04:00:00", day + "05:00:00"),),
    ]
    scattered = [
        (day + "01:00:00", day + "02:00:00"),
        (day + "05:00:00", day + "07:00:00"),
        (day + "09:00:00", day + "10:00:00"),
    ]
    assert split_into_chunks(scattered, 3) == [
        ((day + "01:00:00", day + "02:00:00"), (day + "05:00:00", day + "07:00:00")),
        ((day + "09:00:00", day + "10:00:00"),),
    ]
    assert split_into_chunks([], 48) == []


@pytest.mark.parametrize("value", ["0", "-3", '"48"', "true", "1.5"])
def test_chunk_hours_must_be_a_positive_whole_number(project_config, value):
    from clickstream.config import ConfigError

    project_config(marts__chunk_hours=value)

    with pytest.raises(ConfigError, match=r"marts\.chunk_hours"):
        get_settings()
