"""Resolving many windows in one task: lateness, absent objects, catch-up batches, reloads.

All on the real local S3 server and the real chdb engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from interleaving import InterleavingHook
from source_objects import put_object, put_table
from synthetic_clickstream import upload_hours

from clickstream import catchup, clock, loading
from clickstream.config import get_settings
from clickstream.loading import (
    SourceObjectLate,
    WarehouseRejectedObject,
    WindowLoader,
    ensure_schema,
    fail_on_problems,
    load_windows,
    problems,
    source_bucket,
    window_ready,
)
from clickstream.source import SourceObjectMissing, day_prefix, object_key
from clickstream.warehouse import ClickHouseHook

HOUR = timedelta(hours=1)
# Fixed "now" for the lateness rules: windows ending before NOW - horizon are history.
NOW = datetime(2024, 4, 12, 12, 30, tzinfo=UTC)
START = datetime(2024, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(bucket, s3_connection):
    base = get_settings()
    return replace(base, start_date=START, source=replace(base.source, bucket=bucket))


def log_rows(hook) -> list[tuple[str, str, str]]:
    """(table, window_start, status) of every ingest_log row, oldest window first."""
    rows = hook.backend.execute(
        "SELECT table_name, toString(window_start), status FROM clickstream.ingest_log "
        "ORDER BY window_start, table_name, finished_at",
        {},
    )
    return [tuple(row) for row in rows]


def committed_load_ids(hook) -> dict[tuple[str, str], str]:
    rows = hook.backend.execute(
        "SELECT table_name, toString(window_start), toString(load_id) FROM clickstream.committed_loads", {}
    )
    return {(table, window): load_id for table, window, load_id in rows}


def stamp(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d %H:%M:%S")


# --- the lateness horizon -----------------------------------------------------------------


def test_day_prefix_lists_a_whole_day_of_the_default_layout():
    template = get_settings().source.key_template
    assert day_prefix(template, START + 5 * HOUR) == "year=2024/month=04/day=12/hour="
    assert object_key(template, START + 5 * HOUR, "geo_events").startswith(day_prefix(template, START))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("%Y%m%d/%H/{table}.zip", "20240412/", id="hour-folder"),
        pytest.param("{table}/%Y-%m-%d-%H.zip", "", id="table-first"),
        pytest.param("raw/%Y/%j/{table}-%H.zip", "raw/2024/103/", id="day-of-year"),
    ],
)
def test_day_prefix_stops_at_the_first_field_that_changes_within_a_day(template, expected):
    prefix = day_prefix(template, START)
    assert prefix == expected
    for hour in (START, START + 23 * HOUR):
        assert object_key(template, hour, "t").startswith(prefix)


def test_a_recent_window_waits_for_its_objects_and_an_old_one_resolves_at_once(s3_client, bucket, settings):
    horizon = settings.source.lateness_horizon
    window = START + 3 * HOUR
    window_end = window + HOUR
    for table in settings.table_names[:-1]:
        put_table(s3_client, bucket, window, table, ["{}"])

    assert window_ready(settings, window, now=window_end + timedelta(minutes=1)) is False
    assert window_ready(settings, window, now=window_end + horizon - timedelta(seconds=1)) is False
    assert window_ready(settings, window, now=window_end + horizon) is True

    put_table(s3_client, bucket, window, settings.table_names[-1], ["{}"])
    assert window_ready(settings, window, now=window_end + timedelta(minutes=1)) is True


@pytest.mark.parametrize("outcome", ["fail", "skip"])
def test_a_live_window_is_never_resolved_while_its_object_is_late(warehouse, settings, outcome):
    settings = replace(settings, source=replace(settings.source, absent_object_outcome=outcome))
    loader = WindowLoader(warehouse, source_bucket(settings), settings)
    window = START + 3 * HOUR
    one_minute_late = window + HOUR + timedelta(minutes=1)

    with pytest.raises(SourceObjectLate, match=r"browser_events\.jsonl\.zip: absent.*lateness horizon"):
        load_windows(loader, [(window, settings.tables)], now=one_minute_late)

    assert log_rows(warehouse) == []


def test_an_absent_object_alone_leaves_no_failed_attempt(loader, warehouse, settings):
    with pytest.raises(SourceObjectMissing):
        loader.load(settings.table("geo_events"), START)
    # The attempt is on record (started, then absent), and neither row resolves the window.
    assert [status for *_, status in log_rows(warehouse)] == ["started", "absent"]


# --- absent past the horizon --------------------------------------------------------------


def test_absent_objects_past_the_horizon_are_recorded_missing_and_reported_once(
    s3_client, bucket, loader, warehouse, settings
):
    windows = [START + offset * HOUR for offset in range(4)]
    upload_hours(s3_client, bucket, windows[0], 1, events_per_hour=50, seed=2)
    put_table(s3_client, bucket, windows[3], "browser_events", [])

    report = load_windows(loader, [(window, settings.tables) for window in windows], now=NOW).to_dict()

    rows = log_rows(warehouse)
    assert {(t, w) for t, w, _ in rows} == {(t, stamp(w)) for w in windows for t in settings.table_names}
    missing = {(t, w) for t, w, status in rows if status == "missing"}
    assert missing == {(t, stamp(w)) for w in windows[1:3] for t in settings.table_names} | {
        (t, stamp(windows[3])) for t in settings.table_names if t != "browser_events"
    }
    assert report["absent_status"] == "missing"
    assert (report["windows"], report["committed"], report["absent_windows"]) == (4, 5, 2)

    text = problems(report)
    assert "11 object(s) absent past the lateness horizon" in text
    assert "2024-04-12 01:00 .. 2024-04-12 02:00 UTC (2 h): browser_events, device_events" in text
    assert (
        "2024-04-12 03:00 .. 2024-04-12 03:00 UTC (1 h): device_events, geo_events, location_events" in text
    )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="11 object"):
        fail_on_problems(report)


def test_skip_outcome_commits_an_empty_window_in_place_of_what_it_showed(
    s3_client, bucket, warehouse, settings
):
    skip = replace(settings, source=replace(settings.source, absent_object_outcome="skip"))
    loader = WindowLoader(warehouse, source_bucket(skip), skip)
    table = skip.table("browser_events")
    upload_hours(s3_client, bucket, START, 1, events_per_hour=30, seed=4, tables=[table])
    loader.load(table, START)
    s3_client.delete_object(Bucket=bucket, Key=object_key(skip.source.key_template, START, table.name))

    report = load_windows(loader, [(START, (table,))], now=NOW).to_dict()

    assert report["absent_status"] == "skipped" and problems(report) == ""
    assert warehouse.backend.execute("SELECT count() FROM clickstream.browser_events", {}) == [[0]]
    assert warehouse.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {}) == [[0]]
    assert [status for _, _, status in log_rows(warehouse)] == ["started", "loaded", "skipped"]


def test_skip_never_empties_a_load_committed_after_the_batch_began(s3_client, bucket, warehouse, settings):
    """The batch lists the day, the late object arrives and the live DAG loads it, then the
    batch records what it found absent: the live load stays, with its rows."""
    skip = replace(settings, source=replace(settings.source, absent_object_outcome="skip"))
    table = skip.table("browser_events")
    upload_hours(s3_client, bucket, START + HOUR, 1, events_per_hour=30, seed=4, tables=[table])

    def the_live_dag_loads_the_late_object():
        upload_hours(s3_client, bucket, START, 1, events_per_hour=20, seed=5, tables=[table])
        WindowLoader(warehouse, source_bucket(skip), skip).load(table, START)

    batch = WindowLoader(
        InterleavingHook(warehouse, the_live_dag_loads_the_late_object), source_bucket(skip), skip
    )
    report = load_windows(batch, [(START + HOUR, (table,)), (START, (table,))], now=NOW).to_dict()

    committed = warehouse.backend.execute(
        "SELECT toString(window_start), status, rows FROM clickstream.committed_loads ORDER BY window_start",
        {},
    )
    assert committed == [[stamp(START), "loaded", 20], [stamp(START + HOUR), "loaded", 30]]
    assert warehouse.backend.execute("SELECT count() FROM clickstream.browser_events", {}) == [[50]]
    assert (report["absent_objects"], report["committed"]) == (0, 1)
    assert "skipped" not in [status for _, _, status in log_rows(warehouse)]


def test_a_hundred_absent_hours_make_one_line_of_report(loader, warehouse, settings):
    windows = [START - offset * HOUR for offset in range(100)]

    report = load_windows(loader, [(window, settings.tables) for window in windows], now=NOW).to_dict()

    assert len(log_rows(warehouse)) == 400
    lines = problems(report).splitlines()
    assert lines == [
        "400 object(s) absent past the lateness horizon (status missing):",
        "  2024-04-07 21:00 .. 2024-04-12 00:00 UTC (100 h): "
        "browser_events, device_events, geo_events, location_events",
    ]


def test_the_report_stays_small_however_scattered_the_absent_hours(s3_client, bucket, loader, settings):
    windows = [START - offset * HOUR for offset in range(60)]
    for window in windows[::2]:
        upload_hours(s3_client, bucket, window, 1, events_per_hour=5, seed=3)

    report = load_windows(loader, [(window, settings.tables) for window in windows], now=NOW).to_dict()

    assert (report["absent_objects"], report["absent_runs_total"], len(report["absent_runs"])) == (
        120,
        30,
        20,
    )
    assert problems(report).splitlines()[-1] == (
        "  ... and 10 more run(s) of hours: see ingest_log, status 'missing'"
    )
    assert len(json.dumps(report)) < 5000


def test_a_report_lists_the_first_rejected_objects_and_counts_the_rest():
    listed = [
        ["geo_events", f"2024-04-12T{hour:02d}:00:00+00:00", "s3://b/k: not a ZIP\ndetail"]
        for hour in range(20)
    ]
    report = {"absent_objects": 0, "absent_status": "", "rejected_objects": 25, "rejected": listed}

    lines = problems(report).splitlines()

    assert lines[0] == "rejected geo_events 2024-04-12T00:00:00+00:00: s3://b/k: not a ZIP"
    assert lines[-1] == "... and 5 more rejected object(s): see ingest_log, status 'rejected'"
    assert len(lines) == 21


# --- rejected and failed windows ----------------------------------------------------------


def test_a_damaged_object_is_rejected_and_the_batch_goes_on(s3_client, bucket, loader, warehouse, settings):
    upload_hours(s3_client, bucket, START, 2, events_per_hour=40, seed=6)
    key = put_object(s3_client, bucket, START + HOUR, "geo_events", b"<html>not a zip</html>")

    report = load_windows(
        loader, [(START + HOUR, settings.tables), (START, settings.tables)], now=NOW
    ).to_dict()

    statuses = {(t, w): status for t, w, status in log_rows(warehouse)}
    assert statuses.pop(("geo_events", stamp(START + HOUR))) == "rejected"
    assert set(statuses.values()) == {"loaded"} and len(statuses) == 7
    [[table, window, error]] = report["rejected"]
    assert (table, window) == ("geo_events", (START + HOUR).isoformat())
    assert key in error
    assert f"rejected geo_events {(START + HOUR).isoformat()}: s3://{bucket}/{key}" in problems(report)


# --- catch-up batches ---------------------------------------------------------------------


def run_catch_up(settings, monkeypatch, now: datetime, **kwargs) -> dict:
    monkeypatch.setattr(clock, "now", lambda: now)
    return catchup.catch_up(settings, run_id="test", try_number=1, **kwargs)


def test_each_batch_first_sweeps_staged_rows_no_reader_will_see(
    s3_client, bucket, chdb_path, settings, monkeypatch
):
    """A failed load whose clean-up never ran (its process died first) left its staged rows
    in a window the catch-up does not own (within the horizon): only the sweep removes them."""

    class DiesBeforeCleanUp:
        def __init__(self, hook):
            self._hook = hook

        def __getattr__(self, name):
            return getattr(self._hook, name)

        def load_json_lines(self, *args, **kwargs):
            self._hook.load_json_lines(*args, **kwargs)
            raise RuntimeError("the engine stopped after staging some blocks")

        def run(self, name, params=None):
            return [] if name == "delete_load_rows" else self._hook.run(name, params)

    live = datetime(2024, 4, 12, 11, tzinfo=UTC)
    upload_hours(s3_client, bucket, live, 1, events_per_hour=30, seed=3)
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        with pytest.raises(WarehouseRejectedObject):
            WindowLoader(DiesBeforeCleanUp(hook), source_bucket(settings), settings).load(
                settings.table("browser_events"), live
            )
        assert staged_rows(hook) == 30

    run_catch_up(settings, monkeypatch, NOW)

    with ClickHouseHook() as hook:
        assert staged_rows(hook) == 0


def staged_rows(hook) -> int:
    [[count]] = hook.backend.execute("SELECT count() FROM clickstream.browser_events_loads", {})
    return int(count)


def test_history_ends_where_the_lateness_horizon_begins(settings):
    horizon = settings.source.lateness_horizon
    end = catchup.history_end(settings, NOW)
    assert end == datetime(2024, 4, 12, 10, tzinfo=UTC)
    assert end + horizon <= NOW < end + HOUR + horizon
    assert catchup.history_end(settings, START) == START


def test_first_start_resolves_every_hour_of_history_once(s3_client, bucket, chdb_path, settings, monkeypatch):
    upload_hours(s3_client, bucket, START, 6, events_per_hour=40, seed=7)
    upload_hours(s3_client, bucket, START + 8 * HOUR, 4, events_per_hour=40, seed=7)
    history = [START + offset * HOUR for offset in range(10)]  # 12:30 minus a 2 h horizon

    report = run_catch_up(settings, monkeypatch, NOW)

    assert (report["windows"], report["remaining"], report["absent_windows"]) == (10, 0, 2)
    with ClickHouseHook() as hook:
        rows = log_rows(hook)
        first = committed_load_ids(hook)
    assert {(t, w) for t, w, _ in rows} == {(t, stamp(w)) for w in history for t in settings.table_names}
    final = [(t, w, status) for t, w, status in rows if status != "started"]
    assert len(final) == 40, "one final row per table and window"
    assert len(rows) - len(final) == 8 * len(settings.tables), "and a started row per load of an object"
    assert {w for _, w, status in rows if status == "missing"} == {
        stamp(START + 6 * HOUR),
        stamp(START + 7 * HOUR),
    }

    again = run_catch_up(settings, monkeypatch, NOW)
    assert (again["windows"], again["remaining"]) == (0, 0)
    with ClickHouseHook() as hook:
        assert committed_load_ids(hook) == first, "a resolved window is never loaded again by the catch-up"


def test_a_batch_stops_at_its_time_budget_and_the_next_one_goes_on(
    s3_client, bucket, chdb_path, settings, monkeypatch
):
    upload_hours(s3_client, bucket, START, 10, events_per_hour=20, seed=8)
    # A budget that is over before the batch starts: each batch still resolves one window.
    monkeypatch.setattr(catchup, "time", SimpleNamespace(monotonic=lambda: -1e9))

    reports = [run_catch_up(settings, monkeypatch, NOW)]
    while reports[-1]["remaining"] and len(reports) < 20:
        reports.append(run_catch_up(settings, monkeypatch, NOW))

    assert [report["windows"] for report in reports] == [1] * 10
    assert [report["remaining"] for report in reports] == list(range(9, -1, -1))
    newest_first = [report["first_window"] for report in reports]
    assert newest_first == [(START + offset * HOUR).isoformat() for offset in range(9, -1, -1)]


def test_a_failed_window_is_tried_again_and_a_rejected_one_is_not(
    s3_client, bucket, chdb_path, settings, monkeypatch, warehouse_clock
):
    upload_hours(s3_client, bucket, START, 10, events_per_hour=20, seed=9)
    put_object(s3_client, bucket, START + 2 * HOUR, "device_events", b"")
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        hook.run(
            "insert_ingest_log_absent",
            {
                "database": "clickstream",
                "status": "failed",
                "source_bucket": bucket,
                "absent": json.dumps(
                    [["00000000-0000-4000-8000-000000000001", "geo_events", stamp(START), "k", "boom"]]
                ),
                "committed_since": clock.warehouse_now(hook),
                "dag_run_id": "earlier",
                "try_number": 1,
            },
        )

    warehouse_clock["by"] = timedelta(seconds=settings.catchup.failed_window_retry_seconds)
    report = run_catch_up(settings, monkeypatch, NOW)
    assert report["windows"] == 10 and report["rejected_objects"] == 1

    with ClickHouseHook() as hook:
        statuses = {(t, w): s for t, w, s in log_rows(hook) if s != "failed"}
    assert statuses[("geo_events", stamp(START))] == "loaded"
    assert statuses[("device_events", stamp(START + 2 * HOUR))] == "rejected"
    assert run_catch_up(settings, monkeypatch, NOW)["windows"] == 0


class _FailingWindows:
    """Makes the engine fail every load of the chosen windows, as a memory limit would."""

    def __init__(self, monkeypatch, windows, tables=None):
        self.windows = {window.strftime("%Y-%m-%d %H:%M:%S") for window in windows}
        load_json_lines = ClickHouseHook.load_json_lines

        def fail_chosen_windows(hook, target, table, source, metadata):
            if metadata["window_start"] in self.windows and (tables is None or table.name in tables):
                raise RuntimeError("Code: 241. DB::Exception: Memory limit (total) exceeded")
            return load_json_lines(hook, target, table, source, metadata)

        monkeypatch.setattr(ClickHouseHook, "load_json_lines", fail_chosen_windows)


def test_a_window_that_keeps_failing_holds_back_nothing_and_is_retried_later(
    s3_client, bucket, chdb_path, settings, monkeypatch, warehouse_clock
):
    """48 hours: one fails every time, one is absent. The other 46 commit in one batch, the
    absent one is recorded, the failing one is named and tried again by later batches, each
    time after a longer delay."""
    failing, absent = START + 20 * HOUR, START + 40 * HOUR
    upload_hours(s3_client, bucket, START, 40, events_per_hour=5, seed=11)
    upload_hours(s3_client, bucket, START + 41 * HOUR, 7, events_per_hour=5, seed=12)
    now = START + 50 * HOUR + 30 * timedelta(minutes=1)  # history: the 48 hours from START
    failures = _FailingWindows(monkeypatch, [failing])
    delay = timedelta(seconds=settings.catchup.failed_window_retry_seconds)

    first = run_catch_up(settings, monkeypatch, now)

    assert (first["windows"], first["committed"], first["remaining"]) == (48, 46 * 4, 0)
    assert (first["failed_objects"], first["absent_objects"]) == (4, 4)
    text = problems(first)
    for table in settings.table_names:
        assert f"failed {table} {failing.isoformat()}: WarehouseRejectedObject: " in text
    assert "Memory limit (total) exceeded" in text
    assert "4 object(s) absent past the lateness horizon (status missing):" in text
    with ClickHouseHook() as hook:
        final = {(t, w): s for t, w, s in log_rows(hook) if s not in ("started", "failed")}
    assert len(final) == 47 * 4, "every other window is final, the older ones included"
    assert {s for (_, w), s in final.items() if w < stamp(failing)} == {"loaded"}
    assert {s for (_, w), s in final.items() if w == stamp(absent)} == {"missing"}

    assert run_catch_up(settings, monkeypatch, now)["windows"] == 0, "not before its retry delay"

    warehouse_clock["by"] = delay + timedelta(minutes=1)
    second = run_catch_up(settings, monkeypatch, now)
    assert (second["windows"], second["first_window"], second["failed_objects"]) == (
        1,
        failing.isoformat(),
        4,
    )

    warehouse_clock["by"] = 2 * delay - timedelta(minutes=1)
    assert run_catch_up(settings, monkeypatch, now)["windows"] == 0, "the delay doubled"

    failures.windows.clear()
    warehouse_clock["by"] = 2 * delay + timedelta(minutes=1)
    mended = run_catch_up(settings, monkeypatch, now)
    assert (mended["windows"], mended["committed"], mended["failed_objects"]) == (1, 4, 0)
    with ClickHouseHook() as hook:
        statuses = {s for t, w, s in log_rows(hook) if w == stamp(failing) and s != "started"}
    assert statuses == {"failed", "loaded"}


def test_a_batch_stops_when_window_after_window_fails(s3_client, bucket, chdb_path, settings, monkeypatch):
    """When every load fails, the fault is not one window's: three in a row stop the batch
    rather than put all of history on a retry delay."""
    upload_hours(s3_client, bucket, START, 10, events_per_hour=5, seed=13)
    _FailingWindows(monkeypatch, [START + offset * HOUR for offset in range(10)])

    report = run_catch_up(settings, monkeypatch, NOW)

    assert (report["windows"], report["failed_objects"], report["remaining"]) == (3, 12, 7)
    assert problems(report).splitlines()[-1] == (
        "the batch stopped after 3 windows in a row failed to load: look at the warehouse and the bucket first"
    )


def test_a_failed_table_of_the_live_hour_fails_its_task_after_the_others_commit(
    s3_client, bucket, chdb_path, settings, monkeypatch
):
    live = START + 11 * HOUR
    upload_hours(s3_client, bucket, live, 1, events_per_hour=5, seed=14)
    _FailingWindows(monkeypatch, [live], tables={"geo_events"})
    monkeypatch.setattr(clock, "now", lambda: NOW)

    with pytest.raises(loading.WindowLoadFailed, match=f"failed geo_events {re.escape(live.isoformat())}: "):
        loading.ingest_window(settings, live, run_id="live", try_number=1)

    with ClickHouseHook() as hook:
        statuses = {t: s for t, w, s in log_rows(hook) if s != "started"}
    assert statuses == {
        "browser_events": "loaded",
        "device_events": "loaded",
        "location_events": "loaded",
    } | {"geo_events": "failed"}


def test_a_manual_range_reloads_exactly_that_range(s3_client, bucket, chdb_path, settings, monkeypatch):
    upload_hours(s3_client, bucket, START, 10, events_per_hour=20, seed=10)
    run_catch_up(settings, monkeypatch, NOW)
    with ClickHouseHook() as hook:
        before = committed_load_ids(hook)

    report = run_catch_up(
        settings,
        monkeypatch,
        NOW,
        reload_from=(START + 3 * HOUR).isoformat(),
        reload_to=(START + 5 * HOUR).isoformat(),
    )

    with ClickHouseHook() as hook:
        after = committed_load_ids(hook)
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {(t, stamp(START + offset * HOUR)) for offset in (3, 4) for t in settings.table_names}
    assert report["windows"] == 2 and report["committed"] == 8


def test_a_half_given_reload_range_is_refused(settings, chdb_path, monkeypatch):
    with pytest.raises(catchup.ReloadRangeError, match="reload_from and reload_to"):
        run_catch_up(settings, monkeypatch, NOW, reload_from=START.isoformat())


@pytest.mark.parametrize("length", [pytest.param(-2, id="backwards"), pytest.param(0, id="empty")])
def test_a_backwards_or_empty_reload_range_is_refused_naming_both_ends(
    settings, chdb_path, monkeypatch, length
):
    first, end = START + 3 * HOUR, START + (3 + length) * HOUR
    with pytest.raises(
        catchup.ReloadRangeError,
        match=rf"reload_from {re.escape(first.isoformat())} is not before reload_to {re.escape(end.isoformat())}",
    ):
        run_catch_up(settings, monkeypatch, NOW, reload_from=first.isoformat(), reload_to=end.isoformat())
