"""Run the real Airflow scheduler and UI (`airflow standalone`) on the embedded local stack.

Starts moto_server on loopback, writes a few generated hours from the configured start
date into the bucket, creates the one-slot `clickhouse` pool that chdb needs (one process
per data directory) and runs `airflow standalone` until Ctrl-C, then stops moto_server.
Everything lives under .local/standalone and survives restarts; `make clean` removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

HOME = local_stack.PROJECT_ROOT / ".local" / "standalone"
PORT = 4566


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=int, default=3, help="hours to generate into the bucket")
    parser.add_argument("--events-per-hour", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    HOME.mkdir(parents=True, exist_ok=True)
    with local_stack.moto_server(port=PORT) as endpoint:
        env = local_stack.airflow_environment(HOME / "airflow")
        env["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint)
        env["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(HOME / "chdb")
        os.environ.update(env)
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from clickstream.config import get_settings
        from clickstream.generator import upload_hours

        settings = get_settings()
        client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
        client.create_bucket(Bucket=settings.source.bucket)
        upload_hours(
            client, settings.source.bucket, settings.start_date, args.hours, args.events_per_hour, seed=1
        )
        local_stack.airflow_cli("db", "migrate", env=env)
        local_stack.airflow_cli(
            "pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path", env=env
        )
        print(
            "\nAirflow UI: http://localhost:8080 (the admin password is printed below and kept in "
            f"{HOME / 'airflow'}). Unpause clickstream_ingest_hourly and clickstream_marts.\n",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            subprocess.run(
                [str(Path(sys.executable).with_name("airflow")), "standalone"], env=os.environ, check=False
            )


if __name__ == "__main__":
    main()
