"""The DAG files: they parse, look nothing up while parsing, and follow the bundle's policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

from clickstream.alerts import notify_task_failure
from clickstream.config import PROJECT_ROOT, get_settings

DAG_IDS = {
    "clickstream_ingest_hourly",
    "clickstream_ingest_catchup",
    "clickstream_marts",
    "clickstream_truncate",
}
WAREHOUSE_TASKS = {
    ("clickstream_ingest_hourly", "load_window"),
    ("clickstream_ingest_catchup", "load_batch"),
    ("clickstream_marts", "refresh_marts"),
    ("clickstream_truncate", "empty_tables"),
}


@pytest.fixture(scope="module")
def dag_bag():
    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_all_dags_import_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert set(dag_bag.dags) == DAG_IDS


def test_parsing_looks_up_no_connection(monkeypatch):
    from airflow.sdk import BaseHook

    def refuse(*args, **kwargs):
        raise AssertionError(f"connection looked up while parsing: {args}")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))
    for name in (
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT",
        "AIRFLOW_CONN_CLICKSTREAM_S3",
        "AIRFLOW_CONN_TELEGRAM_DEFAULT",
    ):
        monkeypatch.delenv(name, raising=False)
    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == DAG_IDS


def test_every_task_alerts_on_final_failure(dag_bag):
    # Whatever DAGs dags/ holds: every file must yield a DAG, so a new one cannot slip past.
    dag_files = {path.resolve() for path in (PROJECT_ROOT / "dags").glob("*.py")}
    assert {Path(dag.fileloc).resolve() for dag in dag_bag.dags.values()} == dag_files
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert notify_task_failure in callbacks, f"{dag.dag_id}.{task.task_id} sends no alert"


# Checks that report absent or damaged objects fail for good at once: a retry cannot mend them.
CHECK_TASKS = {("clickstream_ingest_hourly", "check_window"), ("clickstream_ingest_catchup", "check_batch")}


def test_retries_follow_config(dag_bag):
    settings = get_settings()
    expected = {
        "clickstream_ingest_hourly": settings.ingest.retries,
        "clickstream_ingest_catchup": settings.ingest.retries,
        "clickstream_marts": settings.marts.retries,
        "clickstream_truncate": 0,
    }
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            wanted = 0 if (dag.dag_id, task.task_id) in CHECK_TASKS else expected[dag.dag_id]
            assert task.retries == wanted, f"{dag.dag_id}.{task.task_id}"


def test_pool_priorities_put_the_live_hour_then_the_marts_before_the_catch_up(dag_bag):
    def weight(dag_id: str, task_id: str) -> int:
        task = dag_bag.dags[dag_id].get_task(task_id)
        assert task.weight_rule == "absolute", f"{dag_id}.{task_id} weight depends on the graph"
        return task.priority_weight

    live = weight("clickstream_ingest_hourly", "load_window")
    marts = weight("clickstream_marts", "refresh_marts")
    catch_up = weight("clickstream_ingest_catchup", "load_batch")
    assert live > marts > catch_up


def test_tasks_that_open_the_warehouse_share_its_pool(dag_bag):
    pool = get_settings().warehouse.pool
    in_pool = {
        (dag.dag_id, task.task_id) for dag in dag_bag.dags.values() for task in dag.tasks if task.pool == pool
    }
    assert in_pool == WAREHOUSE_TASKS


def test_live_ingest_runs_the_newest_complete_hour_only(dag_bag, monkeypatch):
    import airflow.timetables.interval

    # The scheduler's own clock, held at one instant: no hour can roll over inside the test.
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    monkeypatch.setattr(airflow.timetables.interval, "utcnow", lambda: now)
    dag = dag_bag.dags["clickstream_ingest_hourly"]
    assert dag.catchup is False, "history belongs to the catch-up DAG"
    timetable = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=False)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    newest_end = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert info.data_interval.end == newest_end
    assert info.data_interval.end - info.data_interval.start == timedelta(hours=1)
    following = timetable.next_dagrun_info(
        last_automated_data_interval=info.data_interval, restriction=restriction
    )
    assert following.data_interval.start == info.data_interval.end


def test_live_ingest_always_has_a_free_run_slot_beside_waiting_runs(dag_bag):
    dag = dag_bag.dags["clickstream_ingest_hourly"]
    waiting_runs = -(-get_settings().source.lateness_horizon_seconds // 3600) + 1
    assert dag.max_active_runs > waiting_runs


def test_catch_up_runs_on_its_backlog_asset_and_an_hourly_timer_one_batch_at_a_time(dag_bag):
    dag = dag_bag.dags["clickstream_ingest_catchup"]
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == ["clickstream/catchup-backlog"]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert [o.uri for o in dag.get_task("continue_catch_up").outlets] == ["clickstream/catchup-backlog"]
    assert [o.uri for o in dag.get_task("load_batch").outlets] == ["clickstream/raw"]
    assert [o.uri for o in dag_bag.dags["clickstream_ingest_hourly"].get_task("load_window").outlets] == [
        "clickstream/raw"
    ]


def test_marts_run_on_the_raw_asset_one_at_a_time(dag_bag):
    dag = dag_bag.dags["clickstream_marts"]
    assert [asset.uri for asset in dag.timetable.asset_condition.objects] == ["clickstream/raw"]
    assert dag.max_active_runs == 1
    refresh = dag.get_task("refresh_marts")
    assert [outlet.uri for outlet in refresh.outlets] == ["clickstream/marts"]


def test_truncate_is_manual_and_demands_a_typed_confirmation(dag_bag):
    dag = dag_bag.dags["clickstream_truncate"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    confirm = dag.params.get_param("confirm")
    assert confirm.has_value is False, "confirm must have no default"
    assert confirm.schema["type"] == "string"
    assert dag.params.get_param("scope").schema["enum"] == ["all", "raw", "marts"]
    assert dag.params["scope"] == "all"
    assert dag.params["dry_run"] is False
