"""
### Clickstream truncate (manual)

Empties the tables this bundle owns. Nothing runs without a typed confirmation.

* `confirm` (required): type the ClickHouse database name to proceed.
* `scope`: `all` (raw tables, ingest log, marts and their watermark), `raw` (raw tables,
  ingest log and the marts' watermark, so the marts rebuild from what is reloaded) or
  `marts` (marts and watermark: the next refresh rebuilds them from the raw tables).
* `dry_run`: list each table and the rows it would lose, change nothing.

Tables are emptied, never dropped; tables the bundle does not create are never touched.
The DAG is created unpaused, so a triggered run starts at once: it has no schedule, and the
typed confirmation is what guards it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from clickstream import truncate
from clickstream.config import get_settings
from clickstream.policy import task_defaults

settings = get_settings()


@dag(
    dag_id="clickstream_truncate",
    schedule=None,
    start_date=pendulum.instance(settings.start_date),
    catchup=False,
    max_active_runs=1,
    # Paused at creation (Airflow's default), a triggered run would wait queued until someone
    # unpaused the DAG; with no schedule, being unpaused runs nothing by itself.
    is_paused_upon_creation=False,
    params={
        "confirm": Param(
            type="string",
            title="Confirm",
            description=f"Type the database name ({settings.warehouse.database}) to empty its tables.",
        ),
        "scope": Param(
            "all", type="string", enum=list(truncate.SCOPES), description="Which tables to empty."
        ),
        "dry_run": Param(False, type="boolean", description="Only report what would be emptied."),
    },
    default_args=task_defaults(retries=0),
    tags=["clickstream", "maintenance"],
    doc_md=__doc__,
)
def clickstream_truncate():
    @task
    def check_request(params=None) -> None:
        truncate.check_request(params.get("confirm"), params["scope"], settings.warehouse.database)

    @task(pool=settings.warehouse.pool)
    def empty_tables(params=None) -> list[dict]:
        return truncate.truncate_warehouse(
            settings, params.get("confirm"), params["scope"], params["dry_run"]
        )

    check_request() >> empty_tables()


clickstream_truncate()
