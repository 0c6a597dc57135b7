"""
### Clickstream ingest: the live hour

Loads the newest hour's object of every source table from the bucket into ClickHouse.

* The run `scheduled__<T>` loads the window [T - 1 h, T) in UTC: a data-interval timetable
  names a run after the end of its interval.
* Live only (`catchup=False`): history, and any hour this DAG missed while the scheduler was
  down, is loaded by `clickstream_ingest_catchup` once it is older than the lateness horizon.
* `wait_for_objects` waits while the window is recent (the lateness horizon, measured from
  the window's end); past it, absent objects resolve at once by `absent_object_outcome`
  (`missing` rows and a failed `check_window`, or empty `skipped` commits).
* Each table's window is replaced atomically: clear the run to reload its hour, as often as
  needed. A manual run loads the hour in the `window_start` param: the way to reload one
  hour that the catch-up loaded.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task

from clickstream import clock, loading
from clickstream.assets import RAW_WINDOWS
from clickstream.config import get_settings
from clickstream.policy import task_defaults

settings = get_settings()
horizon_seconds = settings.source.lateness_horizon_seconds
poke_seconds = settings.source.poke_interval_seconds


@dag(
    dag_id="clickstream_ingest_hourly",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.instance(settings.start_date),
    catchup=False,
    # Room for every run that can wait within the horizon, plus a cleared or manual run.
    max_active_runs=horizon_seconds // 3600 + 3,
    params={
        "window_start": Param(
            None,
            type=["null", "string"],
            description="Hour to load in a manual run, e.g. 2024-04-10T23:00:00Z. Scheduled runs load their interval.",
        )
    },
    default_args=task_defaults(
        settings.ingest.retries, settings.ingest.retry_delay_seconds, settings.priorities.live
    ),
    tags=["clickstream", "ingest"],
    doc_md=__doc__,
)
def clickstream_ingest_hourly():
    @task
    def resolve_window(params=None, data_interval_start=None) -> str:
        return loading.resolve_window(params.get("window_start"), data_interval_start).isoformat()

    # The poke itself decides when waiting is over (the horizon from the window's end); the
    # timeout only backs it up, so a sensor that times out is a fault worth an alert.
    @task.sensor(poke_interval=poke_seconds, timeout=horizon_seconds + 3 * poke_seconds, mode="reschedule")
    def wait_for_objects(window_start: str) -> PokeReturnValue:
        ready = loading.window_ready(settings, loading.parse_window_start(window_start), clock.now())
        return PokeReturnValue(is_done=ready)

    @task(pool=settings.warehouse.pool, outlets=[RAW_WINDOWS])
    def load_window(window_start: str, run_id=None, ti=None, outlet_events=None) -> dict:
        report = loading.ingest_window(
            settings, loading.parse_window_start(window_start), run_id=run_id, try_number=ti.try_number
        )
        outlet_events[RAW_WINDOWS].extra = loading.IngestReport(**report).asset_extra()
        return report

    @task(retries=0)
    def check_window(report: dict) -> None:
        loading.fail_on_problems(report)

    window_start = resolve_window()
    report = load_window(window_start)
    wait_for_objects(window_start) >> report
    check_window(report)


clickstream_ingest_hourly()
