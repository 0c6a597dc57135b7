"""Benchmark of the marts' refresh: does its cost follow the new window, not the history?

Run: ``.venv/bin/python scripts/benchmark_marts.py [--events-per-hour 20000] [--new-hours 3]``

What it does, in one process, on an embedded chdb in a temporary directory:

1. Two databases get synthetic history: ``bench_1d`` 24 hours, ``bench_30d`` 720 hours, at
   ``--events-per-hour`` events per hour. To load 30 days in seconds the history is written
   directly with SQL (``INSERT ... SELECT FROM numbers()`` into the four ``*_loads`` tables,
   plus one commit row per table and window in ``ingest_log``, with the real min/max event
   times), not through S3. Rows look like the source: ids are UUIDs, 8 events per click,
   a quarter of each window's events stamped in the hour before, page paths, browsers,
   devices, regions and utm fields drawn with roughly the generator's weights.
2. The first refresh of each database is a full rebuild (empty watermark): its time is the
   "full rebuild" figure (reported for both sizes).
3. Then ``--new-hours`` new hours are each written as real ZIP objects (20,000 JSON lines per
   table by default) into a bucket of a local S3 server (moto_server on loopback), loaded
   through the ingest path (``WindowLoader``, all four tables) and followed by a timed
   ``refresh``. The median refresh time per database is reported.

Target: the one-hour refresh with 30 days of history takes at most 1.5 x the one with 1 day.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="clickstream-benchmark-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": json.dumps(
            {"conn_type": "clickhouse", "extra": {"chdb_path": str(_HOME / "chdb")}}
        ),
    }
)
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))

from clickstream.config import get_settings  # noqa: E402
from clickstream.loading import WindowLoader, ensure_schema  # noqa: E402
from clickstream.marts import refresh  # noqa: E402
from clickstream.source import SourceBucket, member_name, object_key  # noqa: E402
from clickstream.warehouse import ClickHouseHook  # noqa: E402

TARGET_RATIO = 1.5
FIRST_NEW_HOUR = datetime(2024, 6, 1, 0, tzinfo=UTC)
EVENTS_PER_CLICK = 8


def _uuid(*parts: str) -> str:
    """SQL for a deterministic UUID from the hash of ``parts``."""
    args = ", ".join(parts)
    return (
        f"reinterpretAsUUID(reinterpretAsFixedString(bitShiftLeft(toUInt128(cityHash64('hi', {args})), 64)"
        f" + cityHash64('lo', {args})))"
    )


_ROWS = f"""
    SELECT
        number AS n,
        intDiv(n, {{per_hour:UInt32}}) AS w,
        intDiv(n, {EVENTS_PER_CLICK}) AS c,
        {{first_window:DateTime('UTC')}} + toIntervalHour(w) AS ws,
        toDateTime64(ws, 6, 'UTC') - toIntervalSecond(900) + toIntervalMicrosecond(cityHash64('t', n) % 3600000000) AS ts,
        cityHash64('p', n) % 100 AS p
    FROM numbers({{hours:UInt32}} * {{per_hour:UInt32}})
"""
_META = "ws, {load_id}, concat('synthetic/', toString(ws)), 'synthetic', now64(6, 'UTC')"
HISTORY = {
    "browser_events": f"""
        INSERT INTO {{database:Identifier}}.browser_events_loads
        SELECT {_META.format(load_id=_uuid("'browser_events'", "w"))},
            {_uuid("'e'", "n")}, ts, 'pageview', {_uuid("'c'", "c")},
            ['Chrome', 'Chrome', 'Chrome', 'Chrome', 'Chrome', 'Firefox', 'Firefox', 'InternetExplorer', 'Safari', 'Opera'][1 + cityHash64('b', c) % 10],
            'Mozilla/5.0', 'en_US'
        FROM ({_ROWS})""",
    "location_events": f"""
        INSERT INTO {{database:Identifier}}.location_events_loads
        SELECT {_META.format(load_id=_uuid("'location_events'", "w"))},
            {_uuid("'e'", "n")},
            concat('http://www.dummywebsite.com', path), path,
            concat('www.', source, '.com'), if(source IN ('google', 'bing'), 'search', 'internal'),
            ['cpc', 'affiliate', 'organic', 'social'][1 + cityHash64('m', c) % 4], source,
            concat('ad_', toString(1 + cityHash64('a', c) % 5)),
            if(cityHash64('k', c) % 5 = 0, 'campaign_2', 'campaign_1')
        FROM (
            SELECT *,
                multiIf(p < 40, '/home', p < 63, '/product_a', p < 78, '/product_b', p < 88, '/cart',
                        p < 95, '/payment', '/confirmation') AS path,
                ['google', 'google', 'google', 'facebook', 'facebook', 'facebook', 'facebook', 'facebook',
                 'facebook', 'bing', 'instagram', 'instagram', 'instagram', 'instagram', 'mailchimp',
                 'mailchimp', 'mailchimp', 'mailchimp', 'mailchimp', 'mailchimp'][1 + cityHash64('s', c) % 20] AS source
            FROM ({_ROWS})
        )""",
    "device_events": f"""
        INSERT INTO {{database:Identifier}}.device_events_loads
        SELECT {_META.format(load_id=_uuid("'device_events'", "w"))},
            {_uuid("'c'", "c")}, os_name, os_name, 'Europe/Moscow',
            if(os_name IN ('Android', 'iOS'), 'Mobile', 'Computer'), os_name IN ('Android', 'iOS'),
            concat('user', toString(c % 50000), '@example.com'), {_uuid("'u'", "c % 50000")}
        FROM (
            SELECT *, ['Windows', 'MacOS', 'Linux', 'Android', 'Android', 'iOS', 'iOS', 'iOS', 'iOS', 'MacOS'][1 + cityHash64('o', c) % 10] AS os_name
            FROM ({_ROWS})
        )""",
    "geo_events": f"""
        INSERT INTO {{database:Identifier}}.geo_events_loads
        SELECT {_META.format(load_id=_uuid("'geo_events'", "w"))},
            {_uuid("'c'", "c")}, 55.75, 37.61, 'Russia', 'Europe/Moscow',
            concat('Region ', toString(cityHash64('r', c) % 40)), '10.0.0.1'
        FROM ({_ROWS})""",
}
COMMITS = """
    INSERT INTO {database:Identifier}.ingest_log
    SELECT load_id, {table_name:String}, window_start, 'loaded', 'synthetic', '', '', 0, count(),
        if({with_times:UInt8} = 1, min(event_time), NULL), if({with_times:UInt8} = 1, max(event_time), NULL),
        now64(6, 'UTC'), now64(6, 'UTC'), 0, '', 'benchmark', 1
    FROM (
        SELECT window_start, load_id, {time_column:Identifier} AS event_time
        FROM {database:Identifier}.{loads_table:Identifier}
    )
    GROUP BY window_start, load_id"""


def write_history(hook: ClickHouseHook, settings, first_window: datetime, hours: int, per_hour: int) -> None:
    """Write ``hours`` windows of synthetic rows and their commits, straight into the warehouse."""
    base = {
        "database": settings.warehouse.database,
        "first_window": first_window.strftime("%Y-%m-%d %H:%M:%S"),
        "hours": hours,
        "per_hour": per_hour,
    }
    for table in settings.tables:
        hook.backend.execute(HISTORY[table.name], base)
        hook.backend.execute(
            COMMITS,
            {
                "database": settings.warehouse.database,
                "table_name": table.name,
                "loads_table": table.loads_table,
                "with_times": int(table.event_time_column is not None),
                "time_column": table.event_time_column or "loaded_at",
            },
        )


def hour_lines(window_start: datetime, per_hour: int, rng: random.Random) -> dict[str, list[str]]:
    """JSON lines of one source window: four line-aligned tables, a quarter of the events late."""
    tables: dict[str, list[str]] = {name: [] for name in HISTORY}
    paths = ["/home", "/product_a", "/product_b", "/cart", "/payment", "/confirmation"]
    for click in range(per_hour // EVENTS_PER_CLICK):
        click_id, user = str(uuid.uuid4()), str(uuid.UUID(int=rng.getrandbits(128)))
        os_name = rng.choice(["Windows", "MacOS", "Linux", "Android", "iOS", "iOS"])
        source = rng.choice(["google", "facebook", "bing", "instagram", "mailchimp"])
        browser = rng.choice(["Chrome", "Firefox", "InternetExplorer", "Safari", "Opera"])
        for _ in range(EVENTS_PER_CLICK):
            event_id = str(uuid.uuid4())
            stamp = (
                window_start - timedelta(minutes=15) + timedelta(microseconds=rng.randrange(3_600_000_000))
            )
            path = rng.choices(paths, weights=[40, 23, 15, 10, 7, 5])[0]
            tables["browser_events"].append(
                json.dumps(
                    {
                        "event_id": event_id,
                        "event_timestamp": stamp.strftime("%Y-%m-%d %H:%M:%S.%f"),
                        "event_type": "pageview",
                        "click_id": click_id,
                        "browser_name": browser,
                        "browser_user_agent": "Mozilla/5.0",
                        "browser_language": "en_US",
                    }
                )
            )
            tables["device_events"].append(
                json.dumps(
                    {
                        "click_id": click_id,
                        "os": os_name,
                        "os_name": os_name,
                        "os_timezone": "Europe/Moscow",
                        "device_type": "Mobile" if os_name in ("Android", "iOS") else "Computer",
                        "device_is_mobile": os_name in ("Android", "iOS"),
                        "user_custom_id": f"user{click}@example.com",
                        "user_domain_id": user,
                    }
                )
            )
            tables["geo_events"].append(
                json.dumps(
                    {
                        "click_id": click_id,
                        "geo_latitude": "55.75",
                        "geo_longitude": "37.61",
                        "geo_country": "Russia",
                        "geo_timezone": "Europe/Moscow",
                        "geo_region_name": f"Region {click % 40}",
                        "ip_address": "10.0.0.1",
                    }
                )
            )
            tables["location_events"].append(
                json.dumps(
                    {
                        "event_id": event_id,
                        "page_url": "http://www.dummywebsite.com" + path,
                        "page_url_path": path,
                        "referer_url": f"www.{source}.com",
                        "referer_medium": "search" if source in ("google", "bing") else "internal",
                        "utm_medium": "organic",
                        "utm_source": source,
                        "utm_content": "ad_1",
                        "utm_campaign": "campaign_1",
                    }
                )
            )
    return tables


def put_hour(s3_client, settings, window_start: datetime, per_hour: int, rng: random.Random) -> None:
    """Write one window's four ZIP objects into the source bucket."""
    for table, lines in hour_lines(window_start, per_hour, rng).items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member_name(table), "\n".join(lines) + "\n")
        key = object_key(settings.source.key_template, window_start, table)
        s3_client.put_object(Bucket=settings.source.bucket, Key=key, Body=buffer.getvalue())


def start_s3() -> tuple[subprocess.Popen, str]:
    """Start moto_server on a free loopback port; return the process and its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("moto_server did not start")


def bench(hook, s3_client, conn_id: str, name: str, days: int, per_hour: int, new_hours: int) -> dict:
    """Load ``days`` of history into database ``name``, then time refreshes after new hours."""
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
    loader = WindowLoader(hook, SourceBucket(conn_id, settings.source.bucket), settings)
    rng = random.Random(days)
    refreshes = []
    for index in range(new_hours):
        window_start = FIRST_NEW_HOUR + timedelta(hours=index)
        put_hour(s3_client, settings, window_start, per_hour, rng)
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
    process, endpoint = start_s3()
    os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "benchmark",
            "password": "benchmark",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        s3_client = S3Hook(aws_conn_id="clickstream_s3").get_conn()
        with ClickHouseHook() as hook:
            one_day = bench(hook, s3_client, "clickstream_s3", "1d", 1, args.events_per_hour, args.new_hours)
            thirty = bench(hook, s3_client, "clickstream_s3", "30d", 30, args.events_per_hour, args.new_hours)
    finally:
        process.terminate()
        process.wait(timeout=10)
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
