"""
### Clickstream purchase marts

Refreshes the purchase marts whenever the ingest DAG commits a window (`clickstream/raw`).

* Works from durable state, not from the triggering events (they can be coalesced or
  stranded): a queue in ClickHouse holds the commits the marts do not reflect yet, and each
  run recomputes only the hours they touch, journeys included, in chunks of bounded size.
* The refreshed hours of all five marts become visible together, with one commit row:
  readers see the previous or the refreshed marts, never a half-written or empty one.
* A manual run with no params refreshes everything pending; with an empty watermark (first
  run, or after a truncate) it rebuilds the marts from all raw data.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Metadata, dag, task

from clickstream import marts
from clickstream.assets import PURCHASE_MARTS, RAW_WINDOWS
from clickstream.config import get_settings
from clickstream.policy import task_defaults

settings = get_settings()


@dag(
    dag_id="clickstream_marts",
    schedule=[RAW_WINDOWS],
    start_date=pendulum.instance(settings.start_date),
    catchup=False,
    max_active_runs=1,
    # Ahead of catch-up batches in the shared warehouse pool, so the marts keep up while
    # history loads.
    default_args=task_defaults(
        settings.marts.retries, settings.marts.retry_delay_seconds, settings.priorities.marts
    ),
    tags=["clickstream", "marts"],
    doc_md=__doc__,
)
def clickstream_marts():
    @task(pool=settings.warehouse.pool, outlets=[PURCHASE_MARTS])
    def refresh_marts():
        yield Metadata(PURCHASE_MARTS, marts.refresh_warehouse(settings))

    refresh_marts()


clickstream_marts()
