"""Run the `airflow` CLI against the local stack of `make standalone`.

The stack passes its settings as environment only (Airflow home, metadata DB, connections,
API address), so a bare `.venv/bin/airflow dags list` finds another home and asks for a
migration. This sets the same environment, then runs the command:

    make airflow ARGS="dags list"
    make airflow ARGS="backfill create --dag-id clickstream_ingest_hourly --from-date 2024-04-10T23:00:00+00:00 --to-date 2024-04-11T01:00:00+00:00"

Options before the command select a stack started with other options (`--home`, ports).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import local_stack
from standalone import API_PORT, HOME, S3_PORT, standalone_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("--home", type=Path, default=HOME, help="state folder of the stack")
    parser.add_argument("--api-port", type=int, default=API_PORT, help="UI and REST API port of the stack")
    parser.add_argument("--s3-port", type=int, default=S3_PORT, help="port of the stack's local S3 server")
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, default=[], help="the airflow command and its arguments"
    )
    args = parser.parse_args()
    if not args.command:
        parser.error('give an airflow command, e.g. make airflow ARGS="dags list"')
    env = standalone_environment(args.home, f"http://127.0.0.1:{args.s3_port}", args.api_port)
    os.execvpe("airflow", ["airflow", *args.command], {**os.environ, **env})


if __name__ == "__main__":
    os.chdir(local_stack.PROJECT_ROOT)
    sys.exit(main())
