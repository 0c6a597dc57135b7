"""The project's DAGs run through Airflow (``dag.test()``) on moto_server and chdb."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag
from source_objects import put_object
from synthetic_clickstream import upload_hours

from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.source import object_key
from clickstream.warehouse import ClickHouseHook

START = datetime(2024, 4, 10, 23, tzinfo=UTC)
HOURS = [START + timedelta(hours=offset) for offset in range(3)]


@pytest.fixture
def stack(airflow_db, bucket, chdb_path, project_config):
    """Point the bundle at the test bucket and warehouse, with retries that need no waiting."""
    project_config(
        source__bucket=f'"{bucket}"',
        source__poke_interval_seconds="1",
        ingest__retries="1",
        ingest__retry_delay_seconds="0",
        marts__retry_delay_seconds="0",
    )
    return get_settings()


def run_dag(dag_id: str, logical_date: datetime | None = None, conf: dict | None = None):
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags[dag_id].test(logical_date=logical_date, run_conf=conf)


def run_ingest(window_start: datetime):
    # A data-interval timetable's manual run covers the hour that ends at its logical date.
    return run_dag("clickstream_ingest_hourly", logical_date=window_start + timedelta(hours=1))


def task_states(dag_run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


def source_line_counts(s3_client, bucket: str, settings) -> dict[tuple[str, str], int]:
    counts = {}
    for hour in HOURS:
        for table in settings.table_names:
            body = s3_client.get_object(
                Bucket=bucket, Key=object_key(settings.source.key_template, hour, table)
            )
            with zipfile.ZipFile(io.BytesIO(body["Body"].read())) as archive:
                lines = archive.read(f"{table}.jsonl").splitlines()
            counts[(table, hour.strftime("%Y-%m-%d %H:%M:%S"))] = len(lines)
    return counts


def loaded_row_counts(settings) -> dict[tuple[str, str], int]:
    with ClickHouseHook() as hook:
        return {
            (table, window): int(rows)
            for table in settings.table_names
            for window, rows, _ in hook.run(
                "select_raw_checksum", {"database": "clickstream", "table": table}
            )
        }


def asset_events(uri: str) -> list[dict]:
    """Return the extras of the Asset events of ``uri``, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        )
        return [event.extra for event in session.scalars(query).all()]


def raw_asset_events(window_start: datetime) -> list[dict]:
    return [e for e in asset_events("clickstream/raw") if e.get("first_window") == window_start.isoformat()]


def test_three_generated_hours_load_every_source_line(stack, s3_client, bucket):
    upload_hours(s3_client, bucket, START, len(HOURS), events_per_hour=300, seed=11)

    for hour in HOURS:
        dag_run = run_ingest(hour)
        assert dag_run.state == "success", task_states(dag_run)

    assert loaded_row_counts(stack) == source_line_counts(s3_client, bucket, stack)
    [event] = raw_asset_events(HOURS[1])
    assert event["last_window"] == HOURS[1].isoformat()
    assert (event["windows"], event["committed"]) == (1, len(stack.table_names))
    loaded = loaded_row_counts(stack)
    assert event["rows"] == sum(
        rows for (_, window), rows in loaded.items() if window == "2024-04-11 00:00:00"
    )


def test_cleared_run_reloads_its_window_without_duplicates(stack, s3_client, bucket):
    upload_hours(s3_client, bucket, START, 1, events_per_hour=200, seed=3)
    assert run_ingest(START).state == "success"
    first = loaded_row_counts(stack)
    assert run_ingest(START).state == "success"
    assert loaded_row_counts(stack) == first


def test_corrupt_object_is_rejected_and_alerts_once_while_the_other_tables_load(
    stack, s3_client, bucket, telegram_server
):
    upload_hours(s3_client, bucket, START, 1, events_per_hour=100, seed=5)
    key = put_object(s3_client, bucket, START, "geo_events", b"<not a zip & not json>")

    dag_run = run_ingest(START)

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("load_window", -1)] == "success"
    assert states[("check_window", -1)] == "failed"
    loaded = loaded_row_counts(stack)
    assert {table for table, _ in loaded} == set(stack.table_names) - {"geo_events"}
    [alert] = telegram_server.messages
    assert "clickstream_ingest_hourly" in alert.text and "check_window" in alert.text
    assert "<b>Try:</b> 1 of 1" in alert.text
    assert "2024-04-10T23:00:00+00:00 → 2024-04-11T00:00:00+00:00" in alert.text
    assert "AirflowFailException" in alert.text
    assert f"rejected geo_events 2024-04-10T23:00:00+00:00: s3://{bucket}/{key}" in alert.text


def test_an_object_absent_past_the_horizon_is_logged_missing_and_alerts_once(
    stack, s3_client, bucket, telegram_server
):
    upload_hours(s3_client, bucket, START, 1, events_per_hour=100, seed=5)
    s3_client.delete_object(Bucket=bucket, Key=object_key(stack.source.key_template, START, "device_events"))

    dag_run = run_ingest(START)

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states[("wait_for_objects", -1)] == "success", "an hour of 2024 is long past the horizon"
    assert states[("load_window", -1)] == "success"
    assert states[("check_window", -1)] == "failed"
    with ClickHouseHook() as hook:
        rows = hook.backend.execute(
            "SELECT table_name, status, source_key FROM clickstream.ingest_log "
            "WHERE status != 'started' ORDER BY table_name",
            {},
        )
    # The final row of each table (every load attempt also has its started row).
    assert [(table, status) for table, status, _ in rows] == [
        ("browser_events", "loaded"),
        ("device_events", "missing"),
        ("geo_events", "loaded"),
        ("location_events", "loaded"),
    ]
    [alert] = telegram_server.messages
    assert "1 object(s) absent past the lateness horizon" in alert.text
    assert "2024-04-10 23:00 .. 2024-04-10 23:00 UTC (1 h): device_events" in alert.text


def test_marts_dag_brings_the_marts_to_a_full_rebuild_of_what_ingest_loaded(stack, s3_client, bucket):
    from clickstream import marts

    upload_hours(s3_client, bucket, START, 2, events_per_hour=300, seed=8)
    for hour in HOURS[:2]:
        assert run_ingest(hour).state == "success"

    first = run_dag("clickstream_marts")
    assert first.state == "success", task_states(first)
    upload_hours(s3_client, bucket, HOURS[1], 1, events_per_hour=150, seed=9)
    assert run_ingest(HOURS[1]).state == "success"
    second = run_dag("clickstream_marts")
    assert second.state == "success", task_states(second)

    with ClickHouseHook() as hook:
        refreshed = marts.table_checksums(hook, stack)
        marts.full_rebuild(hook, stack)
        assert marts.table_checksums(hook, stack) == refreshed
        [[events]] = hook.run("select_row_count", {"database": "clickstream", "table": "mart_hourly_events"})
    assert int(events) > 0
    extra = asset_events("clickstream/marts")[-1]
    assert extra["mode"] == "incremental"
    assert extra["loads_applied"] == 4


# --- the catch-up DAG -----------------------------------------------------------------------


def history_stack(project_config, bucket: str, clock, hours: int, **overrides: str):
    """Settings whose history (start_date up to the lateness horizon, by the frozen clock) is ``hours`` long."""
    now = clock().replace(minute=0, second=0, microsecond=0)
    horizon = timedelta(seconds=get_settings().source.lateness_horizon_seconds)
    start = now - horizon - timedelta(hours=hours)
    project_config(start_date=f'"{start.isoformat()}"', source__bucket=f'"{bucket}"', **overrides)
    return get_settings()


def logged_windows(status: str) -> dict[str, set[str]]:
    with ClickHouseHook() as hook:
        rows = hook.backend.execute(
            "SELECT toString(window_start), groupArray(table_name) FROM clickstream.ingest_log "
            "WHERE status = {status:String} GROUP BY window_start",
            {"status": status},
        )
    return {window: set(tables) for window, tables in rows}


def test_catch_up_over_a_hundred_absent_hours_alerts_once_and_logs_every_hour(
    airflow_db, bucket, chdb_path, project_config, telegram_server, frozen_clock
):
    settings = history_stack(project_config, bucket, frozen_clock, hours=100)

    dag_run = run_dag("clickstream_ingest_catchup")

    states = task_states(dag_run)
    assert states[("load_batch", -1)] == "success"
    assert states[("continue_catch_up", -1)] == "skipped", "nothing left after one batch"
    assert states[("check_batch", -1)] == "failed"
    missing = logged_windows("missing")
    expected = {
        (settings.start_date + timedelta(hours=offset)).strftime("%Y-%m-%d %H:%M:%S") for offset in range(100)
    }
    assert set(missing) == expected
    assert all(tables == set(settings.table_names) for tables in missing.values())
    [alert] = telegram_server.messages
    assert "400 object(s) absent past the lateness horizon" in alert.text
    assert "(100 h): browser_events, device_events, geo_events, location_events" in alert.text


def test_a_catch_up_batch_that_leaves_history_schedules_the_next_one(
    airflow_db, bucket, chdb_path, project_config, s3_client, telegram_server, frozen_clock
):
    settings = history_stack(project_config, bucket, frozen_clock, hours=40, catchup__batch_seconds="1")
    upload_hours(s3_client, bucket, settings.start_date, 40, events_per_hour=200, seed=12)
    backlog_events = len(asset_events("clickstream/catchup-backlog"))

    dag_run = run_dag("clickstream_ingest_catchup")

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    assert states[("continue_catch_up", -1)] == "success"
    assert len(asset_events("clickstream/catchup-backlog")) == backlog_events + 1
    report = asset_events("clickstream/raw")[-1]
    assert 0 < report["windows"] < 40
    assert telegram_server.messages == []


def committed_loads() -> dict[tuple[str, str], str]:
    with ClickHouseHook() as hook:
        rows = hook.backend.execute(
            "SELECT table_name, toString(window_start), toString(load_id) FROM clickstream.committed_loads",
            {},
        )
    return {(table, window): load_id for table, window, load_id in rows}


def test_hours_loaded_in_bulk_are_reprocessed_one_by_one_or_as_a_range(
    airflow_db, bucket, chdb_path, project_config, s3_client, frozen_clock
):
    settings = history_stack(project_config, bucket, frozen_clock, hours=6)
    upload_hours(s3_client, bucket, settings.start_date, 6, events_per_hour=100, seed=13)
    assert run_dag("clickstream_ingest_catchup").state == "success"
    before = committed_loads()
    rows_before = loaded_row_counts(settings)
    hours = [settings.start_date + timedelta(hours=offset) for offset in range(6)]

    one = run_dag("clickstream_ingest_hourly", conf={"window_start": hours[2].isoformat()})
    assert one.state == "success", task_states(one)
    after_one = committed_loads()
    stamp = "%Y-%m-%d %H:%M:%S"
    assert {key for key in before if after_one[key] != before[key]} == {
        (table, hours[2].strftime(stamp)) for table in settings.table_names
    }

    ranged = run_dag(
        "clickstream_ingest_catchup",
        conf={"reload_from": hours[4].isoformat(), "reload_to": hours[5].isoformat()},
    )
    assert ranged.state == "success", task_states(ranged)
    after_range = committed_loads()
    assert {key for key in before if after_range[key] != after_one[key]} == {
        (table, hours[4].strftime(stamp)) for table in settings.table_names
    }
    assert loaded_row_counts(settings) == rows_before, "reloads replace, never add"


# --- the live hour, within the lateness horizon ----------------------------------------------


class ArrivingClock:
    """The bundle's clock for a live window: each sensor poke reads it once, first of all.

    ``on_poke[n]`` runs before the n-th reading returns (1-based): an object arriving, or the
    clock jumping past the horizon.
    """

    def __init__(self, now: datetime, on_poke: dict):
        self.now = now
        self.on_poke = on_poke
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        action = self.on_poke.get(self.readings)
        if action is not None:
            action(self)
        return self.now


def reschedules(dag_run, task_id: str) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    ti = dag_run.get_task_instance(task_id)
    with create_session() as session:
        return session.scalar(select(func.count()).where(TaskReschedule.ti_id == ti.id))


def live_window(frozen_clock) -> datetime:
    """The newest complete hour at the frozen clock: well within the lateness horizon."""
    return frozen_clock().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def test_the_live_sensor_is_wired_before_the_load(stack):
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).dags["clickstream_ingest_hourly"]
    sensor = dag.get_task("wait_for_objects")
    assert "load_window" in sensor.downstream_task_ids
    assert dag.get_task("load_window").upstream_task_ids == {"resolve_window", "wait_for_objects"}
    assert sensor.mode == "reschedule"


def test_the_live_hour_waits_while_its_objects_are_absent_and_loads_once_they_arrive(
    stack, s3_client, bucket, frozen_clock, monkeypatch
):
    from clickstream import clock

    window = live_window(frozen_clock)

    def arrive(_clock):
        upload_hours(s3_client, bucket, window, 1, events_per_hour=100, seed=21)

    arriving = ArrivingClock(frozen_clock(), on_poke={3: arrive})
    monkeypatch.setattr(clock, "now", arriving)

    dag_run = run_ingest(window)

    states = task_states(dag_run)
    assert dag_run.state == "success", states
    # Two pokes in vain (each a reschedule); the objects arrive as the third looks.
    assert reschedules(dag_run, "wait_for_objects") == 2
    sensor, load = (dag_run.get_task_instance(task_id) for task_id in ("wait_for_objects", "load_window"))
    assert load.start_date >= sensor.end_date, "the load starts once the sensor is done"
    loaded = loaded_row_counts(stack)
    assert {window_start for _, window_start in loaded} == {window.strftime("%Y-%m-%d %H:%M:%S")}
    assert logged_windows("missing") == {}


def test_the_live_hour_resolves_as_missing_once_the_horizon_passes(
    stack, s3_client, bucket, frozen_clock, monkeypatch, telegram_server
):
    from clickstream import clock

    window = live_window(frozen_clock)
    past_horizon = window + timedelta(hours=1, seconds=stack.source.lateness_horizon_seconds)

    def horizon_passes(arriving):
        arriving.now = past_horizon

    arriving = ArrivingClock(frozen_clock(), on_poke={2: horizon_passes})
    monkeypatch.setattr(clock, "now", arriving)

    dag_run = run_ingest(window)

    states = task_states(dag_run)
    assert states[("wait_for_objects", -1)] == "success"
    assert states[("load_window", -1)] == "success"
    assert states[("check_window", -1)] == "failed", "absent past the horizon: one failed check, one alert"
    stamp = window.strftime("%Y-%m-%d %H:%M:%S")
    assert logged_windows("missing") == {stamp: set(stack.table_names)}
    [alert] = telegram_server.messages
    assert "4 object(s) absent past the lateness horizon" in alert.text
