"""Following the bucket: each catch-up batch re-checks recent history and loads what came late
or changed, on the real local S3 server and the real chdb engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from source_objects import put_object
from synthetic_clickstream import upload_hours, write_hour_archives

from clickstream import catchup, clock
from clickstream.config import get_settings
from clickstream.marts import INCREMENTAL, full_rebuild, refresh, table_checksums
from clickstream.recheck import recheck_window_range
from clickstream.source import day_prefix, object_key
from clickstream.warehouse import ClickHouseHook

HOUR = timedelta(hours=1)
START = datetime(2024, 4, 12, 20, tzinfo=UTC)  # four windows, 20:00 .. 23:00: one day prefix
WINDOWS = [START + HOUR * offset for offset in range(4)]
# Windows ending a lateness horizon ago are the catch-up's: all four.
NOW = WINDOWS[-1] + HOUR + timedelta(hours=2, minutes=30)


@pytest.fixture
def settings(bucket, s3_connection, chdb_path):
    base = get_settings()
    return replace(base, start_date=START, source=replace(base.source, bucket=bucket))


def catch_up(settings, monkeypatch) -> dict:
    monkeypatch.setattr(clock, "now", lambda: NOW)
    return catchup.catch_up(settings, run_id="test", try_number=1)


def newest_rows(settings) -> dict[tuple[str, datetime], tuple[str, str, str]]:
    """(table, window) -> (status, etag, error) of its newest ingest_log row."""
    with ClickHouseHook() as hook:
        rows = hook.backend.execute(
            "SELECT table_name, toString(window_start), argMax(status, finished_at), "
            "argMax(source_etag, finished_at), argMax(error, finished_at) "
            "FROM clickstream.ingest_log WHERE status != 'started' GROUP BY table_name, window_start",
            {},
        )
    return {
        (table, datetime.fromisoformat(window).replace(tzinfo=UTC)): (status, etag, error)
        for table, window, status, etag, error in rows
    }


def key(settings, window_start: datetime, table: str) -> str:
    return object_key(settings.source.key_template, window_start, table)


def test_late_changed_rejected_and_deleted_objects_are_followed_once(
    s3_client, bucket, settings, monkeypatch, tmp_path
):
    upload_hours(s3_client, bucket, START, len(WINDOWS), events_per_hour=40, seed=1)
    late, changed, rejected, deleted = WINDOWS

    def body(window_start: datetime, table: str) -> bytes:
        return s3_client.get_object(Bucket=bucket, Key=key(settings, window_start, table))["Body"].read()

    late_browser, good_geo = body(late, "browser_events"), body(rejected, "geo_events")
    s3_client.delete_object(Bucket=bucket, Key=key(settings, late, "browser_events"))
    put_object(s3_client, bucket, rejected, "geo_events", b"<html>not a zip</html>")

    first = catch_up(settings, monkeypatch)
    assert (first["absent_objects"], first["rejected_objects"]) == (1, 1)
    assert (first["recheck"]["late"], first["recheck"]["changed"], first["recheck"]["deleted"]) == (0, 0, 0)
    with ClickHouseHook() as hook:
        refresh(hook, settings)

    # The upstream delivers the late object, corrects two others, deletes one.
    put_object(s3_client, bucket, late, "browser_events", late_browser)
    corrected = write_hour_archives(changed, 50, 2, tmp_path)["device_events"].read_bytes()
    put_object(s3_client, bucket, changed, "device_events", corrected)
    put_object(s3_client, bucket, rejected, "geo_events", good_geo)
    s3_client.delete_object(Bucket=bucket, Key=key(settings, deleted, "location_events"))
    etag_of = {
        (table, window): s3_client.head_object(Bucket=bucket, Key=key(settings, window, table))["ETag"].strip(
            '"'
        )
        for table, window in [("browser_events", late), ("device_events", changed), ("geo_events", rejected)]
    }

    second = catch_up(settings, monkeypatch)
    after = newest_rows(settings)

    recheck = second["recheck"]
    assert (recheck["late"], recheck["changed"], recheck["deleted"]) == (1, 2, 1)
    # One day prefix covers the four windows: one LIST call, nothing downloaded to compare.
    assert recheck["list_calls"] == 1
    for table, window in etag_of:
        assert after[(table, window)][:2] == ("loaded", etag_of[(table, window)])
    assert second["committed"] == 3, "exactly the late and the changed objects load again"
    assert after[("location_events", deleted)][0] == "source_deleted"
    reasons = {reason for _, _, reason in recheck["found"]}
    assert "source arrived late (the window was missing)" in reasons
    assert any(reason.startswith("source changed since it was rejected (ETag ") for reason in reasons)
    assert any(reason.startswith("source changed since it was loaded (ETag ") for reason in reasons)
    assert "source deleted; the window keeps its rows" in reasons
    with ClickHouseHook() as hook:
        [[kept]] = hook.backend.execute(
            "SELECT rows FROM clickstream.committed_loads WHERE table_name = 'location_events' "
            "AND window_start = {window:DateTime('UTC')}",
            {"window": deleted.strftime("%Y-%m-%d %H:%M:%S")},
        )
        assert kept > 0, "a deleted object's window keeps its rows"
        # The marts follow through their queue, and equal a rebuild of what is loaded now.
        followed = refresh(hook, settings)
        assert (followed.mode, followed.loads_applied) == (INCREMENTAL, 3)
        seen = table_checksums(hook, settings)
        full_rebuild(hook, settings)
        assert table_checksums(hook, settings) == seen

    third = catch_up(settings, monkeypatch)
    assert (third["recheck"]["late"], third["recheck"]["changed"], third["recheck"]["deleted"]) == (0, 0, 0)
    assert third["committed"] == 0, "nothing new: nothing loaded again, nothing reported again"


def test_the_re_check_covers_the_configured_days_of_history_only(settings):
    end = datetime(2024, 5, 20, 10, tzinfo=UTC)
    week = replace(settings, source=replace(settings.source, recheck_days=7))
    assert recheck_window_range(week, end) == (end - timedelta(days=7), end)
    assert recheck_window_range(replace(week, start_date=end - HOUR), end) == (end - HOUR, end)
    assert day_prefix(settings.source.key_template, end) == "year=2024/month=05/day=20/hour="
