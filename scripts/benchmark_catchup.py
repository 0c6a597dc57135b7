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
4. follows the bucket: uploads the last absent hour late and replaces a loaded hour near the
   end with other content, triggers the catch-up DAG (its re-check runs before each batch;
   without the trigger the next one comes with the hourly timer), and waits until both are
   loaded and the marts refreshed after them;
5. stops everything it started (by process group), then checks the marts against a full
   rebuild and prints, one per line:

   windows_per_minute, task_instances_per_window, absent_hour_cost_ratio, alerts_sent,
   max_minutes_between_mart_refreshes, live_hour_minutes_to_load,
   late_object_recovered_minutes, changed_object_reloaded_minutes,
   recheck_list_calls_per_period, marts_equal_full_rebuild.

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
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import itertools

import local_stack
import standalone

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


def _batch_reports_by_run() -> dict[str, dict]:
    """{run_id: IngestReport} of every finished catch-up batch (the XCom of load_batch)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.run_id, XComModel.value).where(
                XComModel.dag_id == "clickstream_ingest_catchup",
                XComModel.task_id == "load_batch",
                XComModel.key == "return_value",
            )
        ).all()
    return {run_id: value if isinstance(value, dict) else json.loads(value) for run_id, value in rows}


def _batch_instances() -> list[dict]:
    return [ti for ti in task_instances(("clickstream_ingest_catchup",)) if ti["task_id"] == "load_batch"]


def batch_reports(started_by: datetime | None = None) -> list[dict]:
    """The IngestReport of every finished catch-up batch; with ``started_by``, of the batches
    started by then only."""
    reports = _batch_reports_by_run()
    if started_by is None:
        return list(reports.values())
    early = {ti["run_id"] for ti in _batch_instances() if ti["start"] and ti["start"] <= started_by}
    return [report for run_id, report in reports.items() if run_id in early]


def batches_finished_after(moment: datetime) -> list[tuple[datetime, dict]]:
    """(end, IngestReport) of every catch-up batch that succeeded after ``moment``, oldest first."""
    reports = _batch_reports_by_run()
    found = [
        (ti["end"], reports[ti["run_id"]])
        for ti in _batch_instances()
        if ti["state"] == "success" and ti["end"] and ti["end"] > moment and ti["run_id"] in reports
    ]
    return sorted(found, key=lambda pair: pair[0])


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


def live_run_window() -> datetime | None:
    """The window of the live DAG's first run, once the scheduler has created it."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        starts = session.scalars(
            select(DagRun.data_interval_start)
            .where(DagRun.dag_id == "clickstream_ingest_hourly")
            .order_by(DagRun.data_interval_start)
        ).all()
    return starts[0] if starts else None


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("--hours", type=int, default=240, help="hours of history with data")
    parser.add_argument("--absent-hours", type=int, default=48, help="absent hours inside that history")
    parser.add_argument("--events-per-hour", type=int, default=2000, help="events of each hour with data")
    parser.add_argument("--poke-interval", type=int, default=30, help="the live sensor's poke interval, s")
    parser.add_argument(
        "--batch-seconds",
        type=int,
        default=None,
        help="catch-up batch budget, s; None takes catchup.batch_seconds of the config",
    )
    parser.add_argument(
        "--live-after", type=int, default=60, help="s after the start to upload the live hour"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="give up after this many seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("synthetic_clickstream", "airflow", "botocore", "clickstream.marts"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    now = datetime.now(UTC)

    from telegram_server import FakeTelegramServer

    telegram = FakeTelegramServer().start()
    try:
        with local_stack.interrupted_by_signals(), local_stack.moto_server() as endpoint:
            settings, started, live_window, live_uploaded_at, followed = run_first_start(
                args, endpoint, telegram, now
            )
        alerts_sent = len(telegram.messages)
    finally:
        telegram.stop()
    report(
        settings,
        started,
        live_window,
        live_uploaded_at,
        args.hours + args.absent_hours,
        alerts_sent,
        followed,
    )


def run_first_start(args, endpoint: str, telegram, now: datetime):
    """Run Airflow on a fresh first start until history, the live hour and the marts are done."""
    from telegram_server import connection_uri_json

    from clickstream.config import CONFIG_ENV_VAR, get_settings

    airflow_log = HOME / "airflow.log"
    bucket = "clickstream-benchmark"
    api_port = local_stack.free_port()
    env = standalone.standalone_environment(HOME, endpoint, api_port)
    env["AIRFLOW_CONN_TELEGRAM_DEFAULT"] = connection_uri_json(telegram.base_url)
    os.environ.update(env)
    horizon = timedelta(seconds=get_settings().source.lateness_horizon_seconds)
    total_hours = args.hours + args.absent_hours
    history_end = (now - horizon).replace(minute=0, second=0, microsecond=0)
    start = history_end - timedelta(hours=total_hours)
    os.environ[CONFIG_ENV_VAR] = str(write_config(start, bucket, args.poke_interval, args.batch_seconds))
    settings = get_settings()

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from synthetic_clickstream import upload_hours

    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    client.create_bucket(Bucket=bucket)
    first_present = args.hours // 2
    log.info("Writing %d hours from %s, %d absent in the middle", total_hours, start, args.absent_hours)
    upload_hours(client, bucket, start, first_present, args.events_per_hour, seed=1)
    after_gap = start + timedelta(hours=first_present + args.absent_hours)
    upload_hours(client, bucket, after_gap, args.hours - first_present, args.events_per_hour, seed=1)
    # The hours between history and the live hour: history only if the clock turns an hour
    # during the run, and then they must not read as absent.
    live_window = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    upload_hours(
        client, bucket, history_end, int((live_window - history_end) / timedelta(hours=1)), 1, seed=2
    )

    with airflow_log.open("ab") as sink:
        for command in (
            ["db", "migrate"],
            ["pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path"],
            ["dags", "reserialize"],
        ):
            airflow_cli(command, sink)
        print(f"Airflow output: {airflow_log}", flush=True)
        live_window = live_uploaded_at = None
        with standalone.AirflowStandalone(dict(os.environ), output=sink) as airflow:
            # Unpaused only once the API server answers: a task started before it cannot
            # report to the execution API and waits out a retry delay.
            airflow.wait_until_healthy(api_port)
            started = datetime.now(UTC)
            for dag_id in DAG_IDS:
                airflow_cli(["dags", "unpause", dag_id], sink)
            deadline = time.monotonic() + args.timeout
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not caught up within {args.timeout} s; see {airflow_log}")
                airflow.check()
                elapsed = (datetime.now(UTC) - started).total_seconds()
                if live_uploaded_at is None and elapsed >= args.live_after:
                    live_window = live_run_window()
                    if live_window is not None:
                        upload_hours(client, bucket, live_window, 1, args.events_per_hour, seed=3)
                        live_uploaded_at = datetime.now(UTC)
                        log.info("Uploaded the live hour %s", live_window.isoformat())
                if live_uploaded_at is not None and caught_up(total_hours) and finished(live_window):
                    break
                time.sleep(5)
            late_hour = after_gap - timedelta(hours=1) if args.absent_hours else None
            changed_hour = history_end - timedelta(hours=1)
            followed = follow_the_bucket(
                airflow, client, bucket, args, late_hour, changed_hour, sink, deadline
            )
    return settings, started, live_window, live_uploaded_at, followed


def follow_the_bucket(airflow, client, bucket, args, late_hour, changed_hour, sink, deadline) -> dict:
    """Upload a late hour and change a loaded one, trigger the catch-up, and time until both
    are loaded (the batch after the re-check) and the marts refreshed after them."""
    from synthetic_clickstream import upload_hours

    caught_up_at = datetime.now(UTC)
    if late_hour is not None:
        upload_hours(client, bucket, late_hour, 1, args.events_per_hour, seed=1)
    upload_hours(client, bucket, changed_hour, 1, args.events_per_hour, seed=4)
    uploaded_at = datetime.now(UTC)
    log.info("Uploaded late hour %s and changed hour %s; triggering the catch-up", late_hour, changed_hour)
    airflow_cli(["dags", "trigger", "clickstream_ingest_catchup"], sink)
    found: dict[str, datetime] = {}
    list_calls = 0
    while True:
        if time.monotonic() > deadline:
            raise RuntimeError(f"late and changed objects not loaded within the timeout; found {found}")
        airflow.check()
        for end, batch in batches_finished_after(uploaded_at):
            recheck = batch.get("recheck") or {}
            list_calls = max(list_calls, recheck.get("list_calls", 0))
            if recheck.get("late"):
                found.setdefault("late", end)
            if recheck.get("changed"):
                found.setdefault("changed", end)
        wanted = {"changed"} | ({"late"} if late_hour is not None else set())
        if wanted <= set(found) and marts_idle_after(max(found.values())):
            break
        time.sleep(5)
    return {
        "caught_up_at": caught_up_at,
        "late_minutes": (found["late"] - uploaded_at).total_seconds() / 60 if "late" in found else None,
        "changed_minutes": (found["changed"] - uploaded_at).total_seconds() / 60,
        "list_calls": list_calls,
    }


def airflow_cli(command: list[str], sink) -> None:
    subprocess.run(
        [str(standalone.VENV_BIN / "airflow"), *command],
        env=os.environ,
        check=True,
        stdout=sink,
        stderr=subprocess.STDOUT,
    )


def finished(live_window: datetime) -> bool:
    """Whether the live hour is loaded and the marts refreshed after it and after the last batch."""
    live_end = live_loaded_at(live_window)
    if live_end is None:
        return False
    last_batch_end = max(
        ti["end"]
        for ti in task_instances(("clickstream_ingest_catchup",))
        if ti["task_id"] == "load_batch" and ti["end"]
    )
    return marts_idle_after(max(last_batch_end, live_end))


def report(
    settings,
    started: datetime,
    live_window: datetime,
    live_uploaded_at: datetime,
    total_hours: int,
    alerts: int,
    followed: dict,
) -> None:
    from clickstream import marts
    from clickstream.warehouse import ClickHouseHook

    # The first start only: the batches that followed the bucket afterwards are timed apart.
    caught_up_at = followed["caught_up_at"]
    ingest = [ti for ti in task_instances(INGEST_DAGS) if ti["start"] and ti["start"] <= caught_up_at]
    batches = [ti for ti in ingest if ti["task_id"] == "load_batch"]
    catch_up_start = min(ti["start"] for ti in batches)
    catch_up_end = max(ti["end"] for ti in batches)
    reports = batch_reports(started_by=caught_up_at)
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
    late = followed["late_minutes"]
    print("re-check period: before each catch-up batch (here, a triggered run; otherwise the hourly timer)")
    print(f"late_object_recovered_minutes={'n/a' if late is None else f'{late:.2f}'}")
    print(f"changed_object_reloaded_minutes={followed['changed_minutes']:.2f}")
    print(f"recheck_list_calls_per_period={followed['list_calls']}")
    print(f"marts_equal_full_rebuild={'true' if refreshed == rebuilt else 'false'}")


if __name__ == "__main__":
    main()
