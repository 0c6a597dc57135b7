"""The DAG files: they parse, look nothing up while parsing, and follow the bundle's policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction

from clickstream.alerts import notify_task_failure
from clickstream.config import PROJECT_ROOT, get_settings

DAG_IDS = {"clickstream_ingest_hourly", "clickstream_marts", "clickstream_truncate"}
WAREHOUSE_TASKS = {
    ("clickstream_ingest_hourly", "create_tables"),
    ("clickstream_ingest_hourly", "load_table"),
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


def test_retries_follow_config(dag_bag):
    settings = get_settings()
    expected = {
        "clickstream_ingest_hourly": settings.ingest.retries,
        "clickstream_marts": settings.marts.retries,
        "clickstream_truncate": 0,
    }
    for dag in dag_bag.dags.values():
        assert {task.retries for task in dag.tasks} == {expected[dag.dag_id]}, dag.dag_id


def test_tasks_that_open_the_warehouse_share_its_pool(dag_bag):
    pool = get_settings().warehouse.pool
    in_pool = {
        (dag.dag_id, task.task_id) for dag in dag_bag.dags.values() for task in dag.tasks if task.pool == pool
    }
    assert in_pool == WAREHOUSE_TASKS


def test_ingest_schedule_yields_hourly_windows_from_the_start_date(dag_bag):
    dag = dag_bag.dags["clickstream_ingest_hourly"]
    assert dag.catchup is True
    assert dag.max_active_runs == get_settings().ingest.max_active_runs
    timetable = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=True)
    intervals, last = [], None
    for _ in range(3):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        last = info.data_interval
        intervals.append((last.start.isoformat(), last.end.isoformat()))
    assert intervals == [
        ("2024-04-10T23:00:00+00:00", "2024-04-11T00:00:00+00:00"),
        ("2024-04-11T00:00:00+00:00", "2024-04-11T01:00:00+00:00"),
        ("2024-04-11T01:00:00+00:00", "2024-04-11T02:00:00+00:00"),
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
