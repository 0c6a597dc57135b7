"""Benchmark of the marts: does a refresh cost what changed, and a full rebuild a flat memory?

Run: ``.venv/bin/python scripts/benchmark_marts.py [--history-days 1,30,365]
[--events-per-hour 2000] [--new-hours 5] [--stray-stamp]`` (``make benchmark-marts`` runs the
defaults).

On the local stack (``scripts/local_stack.py``: moto_server on loopback for S3, an embedded
chdb), everything in a temporary directory, one database per history length, each step in a
fresh process of its own (so that each peak RSS is that step's alone):

1. Synthetic history, written with SQL: ``--events-per-hour`` events in every hour of the
   history. To write a year in minutes it bypasses S3 and the loader:
   ``scripts/sql/benchmark_history_<table>.sql`` fills each ``<table>_loads`` table from
   ``numbers()`` (30 days per statement), and ``benchmark_history_commits.sql`` writes one
   commit row per table and window into ``ingest_log``, with the real row counts and
   min/max event times. The rows look like the source: deterministic UUIDs, 8 events per
   click, a quarter of each window's events stamped in the hour before, pages, browsers,
   OS, devices, users, regions and utm fields drawn with about the generator's shares.
2. Full rebuild: once the engine's background merges of the history have finished, the
   first refresh (empty watermark), timed, with the process's peak RSS.
3. One-hour refreshes, once every history is rebuilt and the background merges have
   finished (as they have between two hourly runs), in one process where the histories
   take turns hour by hour, so that whatever else runs on the machine weighs on all of them
   alike: the project's generator (``synthetic_clickstream.upload_hours``, the same seed
   for every history) uploads the hour's ZIP objects in the real layout, including the late
   tail of the hour before; ``WindowLoader`` loads the four tables; a timed ``refresh``
   follows. ``--new-hours`` hours; the median is reported.

With ``--stray-stamp``, every other new hour holds one event stamped 1970-01-01 (a client
clock gone wrong) among its ordinary ones: out of window, it must not widen what the refresh
recomputes. Each history then loads twice ``--new-hours`` hours, ordinary and stray in turn.

Targets: the one-hour refresh with the longest history takes at most 1.3 x the one with
the shortest; the full rebuild's peak RSS over the longest history is at most 1.5 x the one
over the middle one (365 and 30 days by default), and its time per hour of history stays
flat; with ``--stray-stamp``, the refresh of a window with a stray stamp takes at most
1.5 x an ordinary one's, over the longest history. The last line is
``refresh_ratio_<longest>d_vs_<shortest>d=<ratio>``, or with ``--stray-stamp``
``refresh_ratio_stray_vs_normal=<ratio>``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

REFRESH_TARGET = 1.3
RSS_TARGET = 1.5
STRAY_TARGET = 1.5
STRAY_STAMP = "1970-01-01 00:00:00.000000"
FIRST_NEW_HOUR = datetime(2024, 6, 1, 0, tzinfo=UTC)
EVENTS_PER_CLICK = 8
HISTORY_SLICE_HOURS = 30 * 24
SEED = 20240601
MERGES_WAIT_SECONDS = 300


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(days: int):
    from clickstream.config import get_settings

    base = get_settings()
    return replace(
        base,
        warehouse=replace(base.warehouse, database=f"bench_{days}d"),
        source=replace(base.source, bucket=f"bench-{days}d"),
    )


def write_history(days: int, per_hour: int) -> dict:
    """Write ``days`` of synthetic rows and their commits straight into the warehouse."""
    from clickstream.loading import ensure_schema
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(days)
    database = settings.warehouse.database
    hours = days * 24
    first_window = (FIRST_NEW_HOUR - timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")
    started = time.perf_counter()
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        for first_hour in range(0, hours, HISTORY_SLICE_HOURS):
            history = {
                "database": database,
                "first_window": first_window,
                "first_hour": first_hour,
                "hours": min(HISTORY_SLICE_HOURS, hours - first_hour),
                "per_hour": per_hour,
                "events_per_click": EVENTS_PER_CLICK,
            }
            for table in settings.tables:
                hook.run(f"benchmark_history_{table.name}", history, local_stack.SCRIPTS_SQL_DIR)
        for table in settings.tables:
            hook.run(
                "benchmark_history_commits",
                {
                    "database": database,
                    "table_name": table.name,
                    "loads_table": table.loads_table,
                    "has_event_time": int(table.event_time_column is not None),
                    "time_column": table.event_time_column or "loaded_at",
                },
                local_stack.SCRIPTS_SQL_DIR,
            )
    return {"seconds": time.perf_counter() - started}


def full_rebuild(days: int) -> dict:
    """Time the first refresh of the history: a full rebuild, with this process's peak RSS."""
    from clickstream.marts import FULL, refresh
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(days)
    with ClickHouseHook() as hook:
        waited = _wait_for_merges(hook, settings.warehouse.database)
        started = time.perf_counter()
        result = refresh(hook, settings)
        seconds = time.perf_counter() - started
    assert result.mode == FULL, result
    return {
        "seconds": seconds,
        "hours": result.hours,
        "chunks": result.chunks,
        "peak_rss_mb": _peak_rss_mb(),
        "merges_waited_seconds": waited,
    }


def _wait_for_merges(hook, database: str) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < MERGES_WAIT_SECONDS:
        if int(hook.run("select_running_merges", {"database": database})[0][0]) == 0:
            break
        time.sleep(1)
    return time.perf_counter() - started


def one_hour_refreshes(per_hour: int, new_hours: int, stray: int, *history_days: int) -> dict:
    """Load ``new_hours`` generated hours into every history, timing a refresh after each.

    The histories take turns, hour by hour, so that whatever else the machine runs meanwhile
    weighs on all of them alike. ``stray``: twice as many hours, every other one with one
    event stamped at 1970.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from synthetic_clickstream import upload_hours

    from clickstream.loading import WindowLoader, source_bucket
    from clickstream.marts import INCREMENTAL, refresh
    from clickstream.warehouse import ClickHouseHook

    all_settings = {days: _settings(days) for days in history_days}
    s3_client = S3Hook(aws_conn_id="clickstream_s3").get_conn()
    refreshes: dict[int, list[dict]] = {days: [] for days in history_days}
    with ClickHouseHook() as hook:
        waited = sum(_wait_for_merges(hook, s.warehouse.database) for s in all_settings.values())
        loaders = {days: WindowLoader(hook, source_bucket(s), s) for days, s in all_settings.items()}
        for settings in all_settings.values():
            s3_client.create_bucket(Bucket=settings.source.bucket)
        for index in range(new_hours * (2 if stray else 1)):
            window_start = FIRST_NEW_HOUR + timedelta(hours=index)
            with_stray = bool(stray) and index % 2 == 1
            for days, settings in all_settings.items():
                upload_hours(s3_client, settings.source.bucket, window_start, 1, per_hour, SEED)
                if with_stray:
                    _stamp_one_event(s3_client, settings, window_start, STRAY_STAMP)
                for table in settings.tables:
                    loaders[days].load(table, window_start)
                result = refresh(hook, settings)
                assert result.mode == INCREMENTAL, result
                refreshes[days].append(
                    {"seconds": result.seconds, "hours": result.hours, "stray": with_stray}
                )
    return {"refreshes": refreshes, "merges_waited_seconds": waited}


def _stamp_one_event(s3_client, settings, window_start: datetime, stamp: str) -> None:
    """Rewrite the hour's browser_events object with its first event stamped ``stamp``."""
    from clickstream.source import member_name, object_key

    key = object_key(settings.source.key_template, window_start, "browser_events")
    member = member_name("browser_events")
    body = s3_client.get_object(Bucket=settings.source.bucket, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        lines = archive.read(member).decode().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "event_timestamp": stamp})
    written = io.BytesIO()
    with zipfile.ZipFile(written, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, "".join(line + "\n" for line in lines))
    s3_client.put_object(Bucket=settings.source.bucket, Key=key, Body=written.getvalue())


STEPS = {"history": write_history, "rebuild": full_rebuild, "refresh": one_hour_refreshes}


def run_step(step: str, arguments: list[int], chdb_path: Path) -> dict:
    """Run one step in a fresh process on ``chdb_path``; return what it measured."""
    env = {**os.environ, "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": local_stack.chdb_connection_uri(chdb_path)}
    completed = subprocess.run(
        [sys.executable, __file__, "--step", step, *map(str, arguments)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"step {step} {arguments} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _history_days(text: str) -> list[int]:
    try:
        days = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of days") from None
    if not days or days[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every history needs at least one day")
    return days


def _label(days: int) -> str:
    return f"{days} day{'s' if days > 1 else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument(
        "--history-days",
        type=_history_days,
        default="1,30,365",
        help="days of loaded history to refresh over, one measurement each (comma-separated)",
    )
    parser.add_argument("--events-per-hour", type=int, default=2000, help="events of each generated hour")
    parser.add_argument(
        "--new-hours", type=int, default=5, help="hours loaded after the history, then refreshed"
    )
    parser.add_argument(
        "--stray-stamp",
        action="store_true",
        help="also load, in turn with ordinary hours, hours holding one event stamped at 1970",
    )
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step, *arguments = args.step
        print(json.dumps(STEPS[step](*map(int, arguments))))
        return 0
    if args.events_per_hour % EVENTS_PER_CLICK:
        parser.error(f"--events-per-hour must be a multiple of {EVENTS_PER_CLICK}")
    if args.new_hours < 1:
        parser.error("--new-hours must be at least 1")

    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="clickstream-benchmark-") as tmp,
        local_stack.moto_server() as endpoint,
    ):
        home = Path(tmp)
        os.environ.update(local_stack.airflow_environment(home / "airflow"))
        os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint)
        # One data path for every history (a database each), so that the refreshes can take
        # turns in one process; each history is written and rebuilt before the next exists.
        path = home / "chdb"
        for days in args.history_days:
            print(f"{_label(days)} of history, {args.events_per_hour} events per hour:", flush=True)
            history = run_step("history", [days, args.events_per_hour], path)
            print(f"  history written in {history['seconds']:.1f} s", flush=True)
            rebuild = run_step("rebuild", [days], path)
            print(
                f"  full rebuild (after {rebuild['merges_waited_seconds']:.0f} s of background merges): "
                f"{rebuild['seconds']:.2f} s, {rebuild['hours']} hours in {rebuild['chunks']} chunks, "
                f"peak RSS {rebuild['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            results[days] = {"rebuild": rebuild}
        refreshes = run_step(
            "refresh", [args.events_per_hour, args.new_hours, int(args.stray_stamp), *args.history_days], path
        )
        print(
            f"One-hour refreshes, the histories taking turns (after "
            f"{refreshes['merges_waited_seconds']:.0f} s of background merges):",
            flush=True,
        )
        for days in args.history_days:
            timed = refreshes["refreshes"][str(days)]
            ordinary = [entry for entry in timed if not entry["stray"]]
            seconds = [entry["seconds"] for entry in ordinary]
            print(
                f"  {_label(days)}: {', '.join(f'{value:.2f} s' for value in seconds)} "
                f"({ordinary[0]['hours']} hours recomputed each)",
                flush=True,
            )
            results[days]["refresh"] = statistics.median(seconds)
            stray = [entry for entry in timed if entry["stray"]]
            if stray:
                stray_seconds = ", ".join(f"{entry['seconds']:.2f} s" for entry in stray)
                stray_hours = ", ".join(str(entry["hours"]) for entry in stray)
                print(
                    f"  {_label(days)}, one event stamped {STRAY_STAMP[:10]}: {stray_seconds} "
                    f"({stray_hours} hours recomputed)",
                    flush=True,
                )
                results[days]["stray"] = statistics.median(entry["seconds"] for entry in stray)

    shortest, longest = args.history_days[0], args.history_days[-1]
    middle = args.history_days[-2] if len(args.history_days) > 1 else longest
    print(f"\n{args.events_per_hour} events per hour, median of {args.new_hours} refreshes:\n")
    print("| history | one-hour refresh | full rebuild | full rebuild per 1,000 h | full rebuild peak RSS |")
    print("|---|---|---|---|---|")
    for days, result in results.items():
        rebuild = result["rebuild"]
        ratio = result["refresh"] / results[shortest]["refresh"]
        note = f" ({ratio:.2f} x the {_label(shortest)} refresh)" if days != shortest else ""
        per_thousand = rebuild["seconds"] / (days * 24) * 1000
        print(
            f"| {_label(days)} | {result['refresh']:.2f} s{note} | {rebuild['seconds']:.1f} s "
            f"| {per_thousand:.1f} s | {rebuild['peak_rss_mb']:.0f} MB |"
        )
    refresh_ratio = results[longest]["refresh"] / results[shortest]["refresh"]
    rss_ratio = results[longest]["rebuild"]["peak_rss_mb"] / results[middle]["rebuild"]["peak_rss_mb"]
    refresh_met, rss_met = refresh_ratio <= REFRESH_TARGET, rss_ratio <= RSS_TARGET
    print(
        f"\none-hour refresh, {_label(longest)} / {_label(shortest)}: {refresh_ratio:.2f} x "
        f"(target <= {REFRESH_TARGET}) {'met' if refresh_met else 'MISSED'}"
    )
    print(
        f"full rebuild peak RSS, {_label(longest)} / {_label(middle)}: {rss_ratio:.2f} x "
        f"(target <= {RSS_TARGET}) {'met' if rss_met else 'MISSED'}"
    )
    if not args.stray_stamp:
        print(f"refresh_ratio_{longest}d_vs_{shortest}d={refresh_ratio:.2f}")
        return 0 if refresh_met and rss_met else 1
    stray_ratio = results[longest]["stray"] / results[longest]["refresh"]
    stray_met = stray_ratio <= STRAY_TARGET
    print(
        f"one-hour refresh of a window with a stray stamp / an ordinary one, {_label(longest)}: "
        f"{stray_ratio:.2f} x (target <= {STRAY_TARGET}) {'met' if stray_met else 'MISSED'}"
    )
    print(f"refresh_ratio_stray_vs_normal={stray_ratio:.2f}")
    return 0 if refresh_met and rss_met and stray_met else 1


if __name__ == "__main__":
    sys.exit(main())
