"""Benchmark the first start under the real scheduler: catch-up speed, live hour, marts, alerts.

On the embedded stack (moto_server on loopback, chdb), with a fake Telegram Bot API on
loopback, this

1. writes a history of ``--hours`` generated hours (``--events-per-hour`` each) with
   ``--absent-hours`` absent hours in the middle, ending where the lateness horizon begins,
   so the catch-up owns exactly that history;
2. runs the real Airflow components (``airflow standalone``: scheduler, DAG processor,
   triggerer, API server; LocalExecutor, the one-slot ``clickhouse`` pool) with the ingest,
   catch-up and marts DAGs unpaused, as on a first start;
3. uploads the live hour's objects ``--live-after`` seconds into the catch-up, and waits
   until history is resolved, the live hour is loaded and the marts reflect everything;
4. stops everything it started (by process group), then checks the marts against a full
   rebuild and prints, one per line:

   windows_per_minute, task_instances_per_window, absent_hour_cost_ratio, alerts_sent,
   max_minutes_between_mart_refreshes, live_hour_minutes_to_load, marts_equal_full_rebuild.

Timing comes from the task instances' start and end in Airflow's metadata database; the
cost of a window with data and of an absent one from the catch-up batches' own reports.
State lives under .local/benchmark-catchup, recreated on each run; the full Airflow output
goes to a log file there whose path is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import contextlib
import itertools

import local_stack

HOME = local_stack.PROJECT_ROOT / ".local" / "benchmark-catchup"
INGEST_DAGS = ("clickstream_ingest_catchup", "clickstream_ingest_hourly")
DAG_IDS = (*INGEST_DAGS, "clickstream_marts")
log = logging.getLogger("benchmark_catchup")


def write_config(start: datetime, bucket: str, poke_seconds: int, batch_seconds: int | None) -> Path:
    """Write the default config with this history's start date and the benchmark's bucket."""
    text = (local_stack.PROJECT_ROOT / "config" / "clickstream.toml").read_text()
    replacements = {
        "start_date = ": f'start_date = "{start.isoformat()}"',
        "bucket = ": f'bucket = "{bucket}"',
        "poke_interval_seconds = ": f"poke_interval_seconds = {poke_seconds}",
    }
    if batch_seconds is not None:
        replacements["batch_seconds = "] = f"batch_seconds = {batch_seconds}"
    lines = []
    for line in text.splitlines():
        for prefix, replacement in replacements.items():
            if line.startswith(prefix):
                line = replacement
        lines.append(line)
    path = HOME / "clickstream.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def task_instances(dag_ids: tuple[str, ...]) -> list[dict]:
    """Every task instance of ``dag_ids`` (all tries' final states), from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskInstance).where(TaskInstance.dag_id.in_(dag_ids))).all()
        return [
            {
                "dag_id": ti.dag_id,
                "task_id": ti.task_id,
                "run_id": ti.run_id,
                "state": str(ti.state) if ti.state else None,
                "start": ti.start_date,
                "end": ti.end_date,
                "try_number": ti.try_number,
            }
            for ti in rows
        ]


def batch_reports() -> list[dict]:
    """The IngestReport of every finished catch-up batch (the XCom of load_batch)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == "clickstream_ingest_catchup",
                XComModel.task_id == "load_batch",
                XComModel.key == "return_value",
            )
        ).all()
    return [value if isinstance(value, dict) else json.loads(value) for value in values]


def live_loaded_at(live_window: datetime) -> datetime | None:
    """When the live run of ``live_window`` finished loading it, if it has."""
    run_end = (live_window + timedelta(hours=1)).isoformat()
    for ti in task_instances(("clickstream_ingest_hourly",)):
        if ti["task_id"] == "load_window" and ti["state"] == "success" and run_end[:13] in ti["run_id"]:
            return ti["end"]
    return None


def caught_up(expected_windows: int) -> bool:
    reports = batch_reports()
    return (
        bool(reports)
        and sum(r["windows"] for r in reports) >= expected_windows
        and reports[-1]["remaining"] == 0
    )


def marts_idle_after(moment: datetime) -> bool:
    """Whether a marts refresh finished after ``moment`` and none is running or queued."""
    tis = [ti for ti in task_instances(("clickstream_marts",)) if ti["task_id"] == "refresh_marts"]
    finished_after = any(ti["state"] == "success" and ti["end"] and ti["end"] > moment for ti in tis)
    busy = any(ti["state"] in ("running", "queued", "scheduled", "up_for_retry", None) for ti in tis)
    return finished_after and not busy


def start_airflow(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``airflow standalone`` in a process group of its own, output to ``log_path``."""
    with log_path.open("ab") as sink:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """Stop ``process`` and every process it started (its group), by PID; SIGKILL what lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _airflow_version() -> str:
    from airflow import __version__

    return __version__


def max_gap_minutes(moments: list[datetime]) -> float:
    moments = sorted(moments)
    gaps = [(later - earlier).total_seconds() / 60 for earlier, later in itertools.pairwise(moments)]
    return max(gaps, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=int, default=240, help="hours of history with data")
    parser.add_argument("--absent-hours", type=int, default=48, help="absent hours inside that history")
    parser.add_argument("--events-per-hour", type=int, default=2000)
    parser.add_argument("--poke-interval", type=int, default=30, help="the live sensor's poke interval, s")
    parser.add_argument(
        "--batch-seconds", type=int, default=None, help="catch-up batch budget (config default)"
    )
    parser.add_argument(
        "--live-after", type=int, default=60, help="s after the start to upload the live hour"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="give up after this many seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("clickstream.generator", "airflow", "botocore", "clickstream.marts"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    now = datetime.now(UTC)
    live_window = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)

    from telegram_server import FakeTelegramServer

    telegram = FakeTelegramServer().start()
    try:
        with local_stack.moto_server() as endpoint:
            settings, started, live_uploaded_at = run_first_start(args, endpoint, telegram, now, live_window)
        alerts_sent = len(telegram.messages)
    finally:
        telegram.stop()
    report(settings, started, live_window, live_uploaded_at, args.hours + args.absent_hours, alerts_sent)


def run_first_start(args, endpoint: str, telegram, now: datetime, live_window: datetime):
    """Run Airflow on a fresh first start until history, the live hour and the marts are done."""
    from telegram_server import connection_uri_json

    from clickstream.config import CONFIG_ENV_VAR, get_settings

    airflow_log = HOME / "airflow.log"
    bucket = "clickstream-benchmark"
    port = local_stack.free_port()
    env = local_stack.airflow_environment(HOME / "airflow")
    env.update(
        {
            "AIRFLOW_CONN_CLICKSTREAM_S3": local_stack.s3_connection_uri(endpoint),
            "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": local_stack.chdb_connection_uri(HOME / "chdb"),
            "AIRFLOW_CONN_TELEGRAM_DEFAULT": connection_uri_json(telegram.base_url),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
    )
    os.environ.update(env)
    horizon = timedelta(seconds=get_settings().source.lateness_horizon_seconds)
    total_hours = args.hours + args.absent_hours
    history_end = (now - horizon).replace(minute=0, second=0, microsecond=0)
    start = history_end - timedelta(hours=total_hours)
    os.environ[CONFIG_ENV_VAR] = env[CONFIG_ENV_VAR] = str(
        write_config(start, bucket, args.poke_interval, args.batch_seconds)
    )
    settings = get_settings()

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from clickstream.generator import upload_hours

    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    client.create_bucket(Bucket=bucket)
    first_present = args.hours // 2
    log.info("Writing %d hours from %s, %d absent in the middle", total_hours, start, args.absent_hours)
    upload_hours(client, bucket, start, first_present, args.events_per_hour, seed=1)
    after_gap = start + timedelta(hours=first_present + args.absent_hours)
    upload_hours(client, bucket, after_gap, args.hours - first_present, args.events_per_hour, seed=1)

    with airflow_log.open("ab") as sink:
        for command in (
            ["db", "migrate"],
            ["pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path"],
            ["dags", "reserialize"],
            *(["dags", "unpause", dag_id] for dag_id in DAG_IDS),
        ):
            subprocess.run(
                [str(Path(sys.executable).with_name("airflow")), *command],
                env=os.environ,
                check=True,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
    print(f"Airflow output: {airflow_log}", flush=True)
    started = datetime.now(UTC)
    airflow = start_airflow(dict(os.environ), airflow_log)
    live_uploaded_at = None
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if airflow.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {airflow.returncode}; see {airflow_log}")
            elapsed = (datetime.now(UTC) - started).total_seconds()
            if live_uploaded_at is None and elapsed >= args.live_after:
                upload_hours(client, bucket, live_window, 1, args.events_per_hour, seed=1)
                live_uploaded_at = datetime.now(UTC)
                log.info("Uploaded the live hour %s", live_window.isoformat())
            done = caught_up(total_hours) and live_uploaded_at is not None
            live_end = live_loaded_at(live_window) if done else None
            if done and live_end is not None:
                last_batch_end = max(
                    ti["end"]
                    for ti in task_instances(("clickstream_ingest_catchup",))
                    if ti["task_id"] == "load_batch" and ti["end"]
                )
                if marts_idle_after(max(last_batch_end, live_end)):
                    break
            time.sleep(5)
        else:
            raise RuntimeError(f"not caught up within {args.timeout} s; see {airflow_log}")
    finally:
        stop_process_group(airflow)
    return settings, started, live_uploaded_at


def report(
    settings,
    started: datetime,
    live_window: datetime,
    live_uploaded_at: datetime,
    total_hours: int,
    alerts: int,
) -> None:
    from clickstream import marts
    from clickstream.warehouse import ClickHouseHook

    ingest = task_instances(INGEST_DAGS)
    batches = [ti for ti in ingest if ti["task_id"] == "load_batch" and ti["start"]]
    catch_up_start = min(ti["start"] for ti in batches)
    catch_up_end = max(ti["end"] for ti in batches)
    reports = batch_reports()
    windows = sum(r["windows"] for r in reports)
    minutes = (catch_up_end - catch_up_start).total_seconds() / 60
    data_cost = sum(r["data_seconds"] for r in reports) / max(1, sum(r["data_windows"] for r in reports))
    absent_cost = sum(r["absent_seconds"] for r in reports) / max(
        1, sum(r["absent_windows"] for r in reports)
    )
    refreshes = [
        ti["end"]
        for ti in task_instances(("clickstream_marts",))
        if ti["task_id"] == "refresh_marts" and ti["state"] == "success"
    ]
    refresh_points = [
        catch_up_start,
        *[moment for moment in refreshes if moment <= catch_up_end],
        catch_up_end,
    ]
    refresh_points.append(
        min((moment for moment in refreshes if moment >= catch_up_end), default=catch_up_end)
    )
    live_end = live_loaded_at(live_window)

    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        refreshed = marts.table_checksums(hook, settings)
        marts.full_rebuild(hook, settings)
        rebuilt = marts.table_checksums(hook, settings)

    print()
    print(
        f"machine: {os.cpu_count()} cores, {_memory_gib():.0f} GiB; Airflow {_airflow_version()}, LocalExecutor"
    )
    print(f"history: {total_hours} hours ({windows} windows resolved by {len(reports)} catch-up batches)")
    print(f"catch-up: {catch_up_start:%H:%M:%S} to {catch_up_end:%H:%M:%S} UTC ({minutes:.2f} min)")
    print(f"first start to caught up: {(catch_up_end - started).total_seconds() / 60:.2f} min")
    print(
        f"cost per window with data: {data_cost * 1000:.1f} ms; per absent window: {absent_cost * 1000:.2f} ms"
    )
    print(
        f"marts refreshes: {len(refreshes)}; live hour {live_window:%Y-%m-%d %H:00} loaded at {live_end:%H:%M:%S}"
    )
    print(f"windows_per_minute={windows / minutes:.1f}")
    print(f"task_instances_per_window={len(ingest) / (windows + 1):.3f}")
    print(f"absent_hour_cost_ratio={absent_cost / data_cost:.4f}")
    print(f"alerts_sent={alerts}")
    print(f"max_minutes_between_mart_refreshes={max_gap_minutes(refresh_points):.2f}")
    print(f"live_hour_minutes_to_load={(live_end - live_uploaded_at).total_seconds() / 60:.2f}")
    print(f"marts_equal_full_rebuild={'true' if refreshed == rebuilt else 'false'}")


if __name__ == "__main__":
    main()
