"""Benchmark of the marts' refresh: does its cost follow the new window, not the history?

Run: ``.venv/bin/python scripts/benchmark_marts.py [--events-per-hour 20000] [--new-hours 3]``

What it does, in one process, on the local stack (``scripts/local_stack.py``: moto_server on
loopback for S3, an embedded chdb), everything in a temporary directory:

1. Synthetic history, written with SQL: two databases get ``--events-per-hour`` events per
   hour, ``bench_1d`` for 24 hours and ``bench_30d`` for 720 hours. To write 30 days in
   seconds it bypasses S3 and the loader: ``include/sql/benchmark_history_<table>.sql`` fills
   each ``<table>_loads`` table from ``numbers()``, and ``benchmark_history_commits.sql``
   writes one commit row per table and window into ``ingest_log``, with the real row counts
   and min/max event times. The rows look like the source: deterministic UUIDs, 8 events per
   click, a quarter of each window's events stamped in the hour before, pages, browsers, OS,
   devices, users, regions and utm fields drawn with about the generator's shares.
2. The first refresh of each database is a full rebuild (empty watermark): its time is the
   "full rebuild" figure (reported for both sizes).
3. Then ``--new-hours`` new hours go through the ingest path: the project's generator
   (``clickstream.generator.upload_hours``, same seed for both databases) uploads each hour's
   ZIP objects in the real layout, including the late tail of the hour before, into the
   database's own bucket; ``WindowLoader`` loads the four tables, and a timed ``refresh``
   follows. The median refresh time per database is reported.

Target: the one-hour refresh with 30 days of history takes at most 1.5 x the one with 1 day.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

if TYPE_CHECKING:
    from clickstream.config import Settings
    from clickstream.warehouse import ClickHouseHook

TARGET_RATIO = 1.5
FIRST_NEW_HOUR = datetime(2024, 6, 1, 0, tzinfo=UTC)
EVENTS_PER_CLICK = 8
SEED = 20240601


def write_history(
    hook: ClickHouseHook, settings: Settings, first_window: datetime, hours: int, per_hour: int
) -> None:
    """Write ``hours`` windows of synthetic rows and their commits straight into the warehouse."""
    database = settings.warehouse.database
    history = {
        "database": database,
        "first_window": first_window.strftime("%Y-%m-%d %H:%M:%S"),
        "hours": hours,
        "per_hour": per_hour,
        "events_per_click": EVENTS_PER_CLICK,
    }
    for table in settings.tables:
        hook.run(f"benchmark_history_{table.name}", history)
        hook.run(
            "benchmark_history_commits",
            {
                "database": database,
                "table_name": table.name,
                "loads_table": table.loads_table,
                "has_event_time": int(table.event_time_column is not None),
                "time_column": table.event_time_column or "loaded_at",
            },
        )


def bench(hook: ClickHouseHook, s3_client, name: str, days: int, per_hour: int, new_hours: int) -> dict:
    """Load ``days`` of history into database ``bench_<name>``, then time refreshes after new hours."""
    from clickstream.config import get_settings
    from clickstream.generator import upload_hours
    from clickstream.loading import WindowLoader, ensure_schema, source_bucket
    from clickstream.marts import refresh

    base = get_settings()
    settings = replace(
        base,
        warehouse=replace(base.warehouse, database=f"bench_{name}"),
        source=replace(base.source, bucket=f"bench-{name}"),
    )
    s3_client.create_bucket(Bucket=settings.source.bucket)
    ensure_schema(hook, settings)
    started = time.monotonic()
    write_history(hook, settings, FIRST_NEW_HOUR - timedelta(days=days), days * 24, per_hour)
    history_seconds = time.monotonic() - started
    full = refresh(hook, settings)
    loader = WindowLoader(hook, source_bucket(settings), settings)
    refreshes = []
    for index in range(new_hours):
        window_start = FIRST_NEW_HOUR + timedelta(hours=index)
        upload_hours(s3_client, settings.source.bucket, window_start, 1, per_hour, SEED)
        for table in settings.tables:
            loader.load(table, window_start)
        result = refresh(hook, settings)
        refreshes.append(result.seconds)
        print(
            f"  {name}: refresh after new hour {window_start:%Y-%m-%d %H:00}: {result.seconds:.2f} s "
            f"({result.mode}, {result.hours} hours recomputed)",
            flush=True,
        )
    summary = {
        "history_hours": days * 24,
        "history_events": days * 24 * per_hour,
        "history_write_seconds": round(history_seconds, 1),
        "full_rebuild_seconds": full.seconds,
        "one_hour_refresh_seconds": statistics.median(refreshes),
    }
    print(f"  {name}: {summary}", flush=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-hour", type=int, default=20_000)
    parser.add_argument("--new-hours", type=int, default=3)
    args = parser.parse_args()
    if args.events_per_hour % EVENTS_PER_CLICK:
        parser.error(f"--events-per-hour must be a multiple of {EVENTS_PER_CLICK}")

    with (
        tempfile.TemporaryDirectory(prefix="clickstream-benchmark-") as tmp,
        local_stack.moto_server() as endpoint,
    ):
        home = Path(tmp)
        os.environ.update(local_stack.airflow_environment(home / "airflow"))
        os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint)
        os.environ["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(home / "chdb")
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from clickstream.warehouse import ClickHouseHook

        s3_client = S3Hook(aws_conn_id="clickstream_s3").get_conn()
        with ClickHouseHook() as hook:
            one_day = bench(hook, s3_client, "1d", 1, args.events_per_hour, args.new_hours)
            thirty = bench(hook, s3_client, "30d", 30, args.events_per_hour, args.new_hours)

    ratio = thirty["one_hour_refresh_seconds"] / one_day["one_hour_refresh_seconds"]
    print(f"events per hour:                         {args.events_per_hour}")
    print(f"one-hour refresh, 1 day of history:      {one_day['one_hour_refresh_seconds']:.2f} s")
    print(f"one-hour refresh, 30 days of history:    {thirty['one_hour_refresh_seconds']:.2f} s")
    print(f"full rebuild, 1 day (24 h):              {one_day['full_rebuild_seconds']:.2f} s")
    print(f"full rebuild, 30 days (720 h):           {thirty['full_rebuild_seconds']:.2f} s")
    print(f"ratio 30 days / 1 day:                   {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"target met:                              {'yes' if ratio <= TARGET_RATIO else 'NO'}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
