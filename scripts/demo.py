"""Run the bundle end to end on the embedded stack: local S3 (moto_server) and chdb.

1. starts moto_server on loopback and generates hours of clickstream from the configured
   start date into the bucket, in the real layout;
2. runs the ingest DAG for each hour and then the marts DAG through Airflow
   (`airflow dags test`, a real DagRun against a fresh metadata database);
3. prints rows per table and window and rows per mart, and stops what it started.

Everything lives under .local/demo and is recreated on each run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

DEMO_HOME = local_stack.PROJECT_ROOT / ".local" / "demo"
log = logging.getLogger("demo")


def prepare_environment(endpoint_url: str) -> dict[str, str]:
    env = local_stack.airflow_environment(DEMO_HOME / "airflow")
    env["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint_url)
    env["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(DEMO_HOME / "chdb")
    os.environ.update(env)
    return env


def generate_source(settings, hours: int, events_per_hour: int, seed: int) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from clickstream.generator import upload_hours

    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    client.create_bucket(Bucket=settings.source.bucket)
    keys = upload_hours(client, settings.source.bucket, settings.start_date, hours, events_per_hour, seed)
    log.info("Generated %d objects in s3://%s", len(keys), settings.source.bucket)


def run_dags(settings, hours: int, env: dict[str, str]) -> None:
    for offset in range(hours):
        window_start = settings.start_date + timedelta(hours=offset)
        log.info("Ingest DAG for the window starting %s", window_start.isoformat())
        # A data-interval timetable's run covers the hour that ends at its logical date.
        logical_date = (window_start + timedelta(hours=1)).isoformat()
        local_stack.airflow_cli("dags", "test", "clickstream_ingest_hourly", logical_date, env=env)
    log.info("Marts DAG")
    local_stack.airflow_cli("dags", "test", "clickstream_marts", env=env)


def report(settings) -> None:
    from clickstream.warehouse import ClickHouseHook

    database = settings.warehouse.database
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        print(f"\nRows per table and window in {database}:")
        for table in settings.table_names:
            for window_start, rows, _ in hook.run(
                "select_raw_checksum", {"database": database, "table": table}
            ):
                print(f"  {table:<16} {window_start}  {int(rows):>8}")
        print("\nRows per mart:")
        for table in (
            "mart_hourly_events",
            "mart_leading_pages",
            "mart_purchases_by_source",
            "mart_users_by_source",
            "mart_purchases_by_region",
        ):
            [[rows]] = hook.run("select_row_count", {"database": database, "table": table})
            print(f"  {table:<26} {int(rows):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=int, default=3)
    parser.add_argument("--events-per-hour", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20240410)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    shutil.rmtree(DEMO_HOME, ignore_errors=True)
    DEMO_HOME.mkdir(parents=True)
    with local_stack.moto_server() as endpoint:
        env = prepare_environment(endpoint)
        from clickstream.config import get_settings

        settings = get_settings()
        local_stack.airflow_cli("db", "migrate", env=env)
        local_stack.airflow_cli(
            "pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path", env=env
        )
        generate_source(settings, args.hours, args.events_per_hour, args.seed)
        run_dags(settings, args.hours, env)
        report(settings)


if __name__ == "__main__":
    main()
