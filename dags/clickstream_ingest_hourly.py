"""
### Clickstream ingest, hourly

Loads the hour's object of every source table from the bucket into ClickHouse.

* Windows are the hours [H, H+1) in UTC, caught up from the configured start date.
* Each table's window is replaced atomically: clear any task instance to reload its hour,
  as often as needed; the result is always exactly that hour's source rows.
* A manual run loads the hour given in the `window_start` param.
* When all tables of a window are committed, the `clickstream/raw` Asset gets an event
  with the window and the range of event timestamps loaded.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Metadata, Param, PokeReturnValue, dag, task

from clickstream import loading
from clickstream.alerts import notify_task_failure
from clickstream.assets import RAW_WINDOWS
from clickstream.config import get_settings

settings = get_settings()


@dag(
    dag_id="clickstream_ingest_hourly",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.instance(settings.start_date),
    catchup=True,
    max_active_runs=settings.ingest.max_active_runs,
    params={
        "window_start": Param(
            None,
            type=["null", "string"],
            description="Hour to load in a manual run, e.g. 2024-04-10T23:00:00Z. Scheduled runs load their interval.",
        )
    },
    default_args={
        "owner": "data-platform",
        "retries": settings.ingest.retries,
        "retry_delay": timedelta(seconds=settings.ingest.retry_delay_seconds),
        "on_failure_callback": notify_task_failure,
    },
    tags=["clickstream", "ingest"],
    doc_md=__doc__,
)
def clickstream_ingest_hourly():
    @task
    def resolve_window(params=None, data_interval_start=None) -> str:
        return loading.resolve_window(params.get("window_start"), data_interval_start).isoformat()

    @task(pool=settings.warehouse.pool)
    def create_tables() -> None:
        loading.create_tables(settings)

    @task.sensor(
        poke_interval=settings.source.poke_interval_seconds,
        timeout=settings.source.wait_timeout_seconds,
        mode="reschedule",
    )
    def wait_for_object(table: str, window_start: str) -> PokeReturnValue:
        ready = loading.object_ready(settings, table, loading.parse_window_start(window_start))
        return PokeReturnValue(is_done=ready)

    @task(pool=settings.warehouse.pool, map_index_template="{{ task.op_kwargs['table'] }}")
    def load_table(table: str, window_start: str, run_id=None, ti=None) -> dict:
        return loading.load_table_window(
            settings, table, loading.parse_window_start(window_start), run_id=run_id, try_number=ti.try_number
        )

    @task(outlets=[RAW_WINDOWS])
    def publish_window(window_start: str, results: list[dict]):
        summary = loading.summarize_window(loading.parse_window_start(window_start), list(results))
        yield Metadata(RAW_WINDOWS, summary)

    window_start = resolve_window()
    waits = wait_for_object.partial(window_start=window_start).expand(table=settings.table_names)
    loads = load_table.partial(window_start=window_start).expand(table=settings.table_names)
    create_tables() >> waits >> loads
    publish_window(window_start, loads)


clickstream_ingest_hourly()
