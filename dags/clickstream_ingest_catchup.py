"""
### Clickstream ingest: catch-up of history

Loads, in bulk, every window older than the lateness horizon that has no final row in the
ingest log: on the first start the hours from the configured start date, later any hour the
live DAG missed.

* One run is one batch: `load_batch` resolves windows newest first for up to
  `catchup.batch_seconds`, each window committed on its own, then hands the warehouse pool
  back (the live hour and the marts have higher priority weights).
* While history is left, `continue_catch_up` emits `clickstream/catchup-backlog`, which
  schedules the next batch at once; the hourly timer resumes it after a failure.
* `check_batch` fails, with one message for the whole batch, when objects were absent past
  the horizon (outcome `fail`), rejected as damaged, or failed to load: one alert per batch,
  not per hour. A failed window never stops the batch; later batches try it again after a
  growing delay.
* A manual run with `reload_from` and `reload_to` reloads every window of that range,
  whatever its state: the way to reprocess hours loaded in bulk.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clickstream import catchup, loading
from clickstream.assets import CATCHUP_BACKLOG, RAW_WINDOWS
from clickstream.config import get_settings
from clickstream.policy import task_defaults

settings = get_settings()


@dag(
    dag_id="clickstream_ingest_catchup",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 * * * *", timezone="UTC"), assets=[CATCHUP_BACKLOG]
    ),
    start_date=pendulum.instance(settings.start_date),
    catchup=False,
    max_active_runs=1,
    params={
        "reload_from": Param(
            None,
            type=["null", "string"],
            description="First hour of a range to reload in a manual run, e.g. 2024-04-11T00:00:00Z.",
        ),
        "reload_to": Param(
            None,
            type=["null", "string"],
            description="End of that range (exclusive), e.g. 2024-04-12T00:00:00Z.",
        ),
    },
    default_args=task_defaults(
        settings.ingest.retries, settings.ingest.retry_delay_seconds, settings.priorities.catchup
    ),
    tags=["clickstream", "ingest"],
    doc_md=__doc__,
)
def clickstream_ingest_catchup():
    @task(pool=settings.warehouse.pool, outlets=[RAW_WINDOWS])
    def load_batch(params=None, run_id=None, ti=None, outlet_events=None) -> dict:
        try:
            report = catchup.catch_up(
                settings,
                run_id=run_id,
                try_number=ti.try_number,
                reload_from=params.get("reload_from"),
                reload_to=params.get("reload_to"),
            )
        except catchup.ReloadRangeError as error:
            raise AirflowFailException(str(error)) from error  # no retry can mend the params
        outlet_events[RAW_WINDOWS].extra = loading.IngestReport(**report).asset_extra()
        return report

    @task(outlets=[CATCHUP_BACKLOG])
    def continue_catch_up(report: dict) -> None:
        if not report["remaining"]:
            raise AirflowSkipException("history is caught up")

    @task(retries=0)
    def check_batch(report: dict) -> None:
        loading.fail_on_problems(report)

    report = load_batch()
    continue_catch_up(report)
    check_batch(report)


clickstream_ingest_catchup()
