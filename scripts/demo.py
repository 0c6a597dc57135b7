"""Run the bundle end to end on the embedded stack: local S3 (moto_server) and chdb.

1. starts moto_server on loopback and generates hours of clickstream from the configured
   start date into the bucket, in the real layout;
2. runs the DAG runs of ``planned_runs`` through Airflow (`airflow dags test`, a real DagRun
   against a fresh metadata database): the ingest DAG for each hour, then the marts DAG;
3. prints what ran (each run's window, state, task states and time), rows per table and
   window and rows per mart, and stops what it started.

The terminal gets the summary; the full output of Airflow (every `airflow` command and this
script's own log) goes to a log file whose path it prints. Everything lives under .local/demo
and is recreated on each run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

DEMO_HOME = local_stack.PROJECT_ROOT / ".local" / "demo"
LOG_NAME = "airflow.log"


@dataclass(frozen=True)
class PlannedRun:
    """One `airflow dags test` call of the demo.

    :param dag_id: the DAG to run
    :param logical_date: the run's logical date (ISO 8601), or None for the DAG's default
    :param what: what the run does, for the summary
    """

    dag_id: str
    logical_date: str | None
    what: str

    def command(self) -> list[str]:
        return ["dags", "test", self.dag_id, *([self.logical_date] if self.logical_date else [])]


@dataclass(frozen=True)
class RunOutcome:
    """What one planned run did, read back from the metadata DB."""

    run: PlannedRun
    state: str
    task_states: Counter
    seconds: float


def planned_runs(settings, hours: int) -> list[PlannedRun]:
    """Return the DAG runs of the demo, in order: the ingest DAG per hour, then the marts DAG.

    :param settings: the bundle's settings (start date)
    :param hours: hours generated from the start date
    """
    runs = []
    for offset in range(hours):
        window_start = settings.start_date + timedelta(hours=offset)
        window_end = window_start + timedelta(hours=1)
        # A data-interval timetable's run covers the hour that ends at its logical date.
        runs.append(
            PlannedRun(
                "clickstream_ingest_hourly",
                window_end.isoformat(),
                f"loads [{_hour(window_start)}, {_hour(window_end)})",
            )
        )
    runs.append(PlannedRun("clickstream_marts", None, "refreshes the marts"))
    return runs


def prepare_environment(endpoint_url: str, home: Path) -> dict[str, str]:
    env = local_stack.airflow_environment(home / "airflow")
    env["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint_url)
    env["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(
        home / "chdb", home / local_stack.MARTS_SNAPSHOTS
    )
    os.environ.update(env)
    return env


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[TextIO]:
    """Point this process's stdout and stderr (file descriptors 1 and 2) at ``path``; yield the terminal.

    Airflow's logging, the engine's own messages and every child process (`airflow dags test`,
    moto_server) then write to the file, whatever logging setup they use; the summary goes to
    the yielded stream.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    try:
        with path.open("a") as sink:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                yield terminal
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, original in saved.items():
                    os.dup2(original, fd)
    finally:
        terminal.close()
        for original in saved.values():
            os.close(original)


def airflow_command(*args: str, env: dict[str, str]) -> int:
    """Run the Airflow CLI of this virtualenv; its output goes where this process's goes (the log).

    :return: the exit code
    """
    print(f"\n===== airflow {' '.join(args)} =====", flush=True)
    executable = Path(sys.executable).with_name("airflow")
    return local_stack.run_to_end([str(executable), *args], env={**os.environ, **env})


def check_connections(settings) -> None:
    """Fail now, naming it, when a connection the configuration names is not defined: the
    DAGs' tasks would fail the same way, but only in their logs."""
    from clickstream.source import SourceBucket
    from clickstream.warehouse import ClickHouseHook

    SourceBucket(settings.source.conn_id, settings.source.bucket).check_connection()
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        hook.get_conn()


def generate_source(settings, hours: int, events_per_hour: int, seed: int) -> int:
    """Write the generated hours into the bucket; return the number of objects."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from synthetic_clickstream import upload_hours

    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    client.create_bucket(Bucket=settings.source.bucket)
    return len(
        upload_hours(client, settings.source.bucket, settings.start_date, hours, events_per_hour, seed)
    )


def run_dags(runs: list[PlannedRun], env: dict[str, str], out: TextIO) -> list[RunOutcome]:
    """Run each planned run in order, printing a line per run to ``out``; stop at the first that fails.

    :return: the outcome of each run that was started
    """
    outcomes = []
    for run in runs:
        started = time.monotonic()
        code = airflow_command(*run.command(), env=env)
        outcome = _read_outcome(run, time.monotonic() - started)
        outcomes.append(outcome)
        print(_outcome_line(outcome), file=out)
        if code != 0 or outcome.state != "success":
            break
    return outcomes


def _read_outcome(run: PlannedRun, seconds: float) -> RunOutcome:
    """The newest DagRun of the run's DAG (each `dags test` call creates one) and its task states."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_run = session.scalars(
            select(DagRun).where(DagRun.dag_id == run.dag_id).order_by(DagRun.id.desc()).limit(1)
        ).first()
        if dag_run is None:
            return RunOutcome(run, "not created", Counter(), seconds)
        states = Counter(str(ti.state or "none") for ti in dag_run.get_task_instances(session=session))
        return RunOutcome(run, str(dag_run.state), states, seconds)


def _outcome_line(outcome: RunOutcome) -> str:
    tasks = ", ".join(f"{count} {state}" for state, count in sorted(outcome.task_states.items()))
    return (
        f"  {outcome.run.dag_id:<26} {outcome.run.what:<42} {outcome.state:<8} "
        f"tasks: {tasks or '-'}  ({outcome.seconds:.0f} s)"
    )


def report(settings, out: TextIO) -> None:
    """Print rows per table and window, and rows per mart, to ``out``."""
    from clickstream.marts import MARTS
    from clickstream.warehouse import ClickHouseHook

    database = settings.warehouse.database
    tables = list(settings.table_names)
    rows: dict[str, dict[str, int]] = {}
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        for table in tables:
            for window_start, count, _ in hook.run(
                "select_raw_checksum", {"database": database, "table": table}
            ):
                rows.setdefault(str(window_start), {})[table] = int(count)
        mart_rows = {
            mart: int(hook.run("select_row_count", {"database": database, "table": mart})[0][0])
            for mart in MARTS
        }

    widths = [max(len(table), 8) for table in tables]
    print(f"\nRows per table and window (window start, UTC) in {database}:", file=out)
    print(
        "  " + f"{'window':<19}" + "".join(f"  {t:>{w}}" for t, w in zip(tables, widths, strict=True)),
        file=out,
    )
    for window in sorted(rows):
        cells = "".join(f"  {rows[window].get(t, 0):>{w},}" for t, w in zip(tables, widths, strict=True))
        print(f"  {window:<19}{cells}", file=out)
    if not rows:
        print("  (no window loaded)", file=out)
    print(f"\nRows per mart in {database}:", file=out)
    for mart, count in mart_rows.items():
        print(f"  {mart:<26} {count:>8,}", file=out)


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def demo(args: argparse.Namespace, out: TextIO) -> bool:
    """Run the demo, printing the summary to ``out``; return whether every run succeeded."""
    with local_stack.moto_server() as endpoint:
        env = prepare_environment(endpoint, args.home)
        from clickstream.config import get_settings

        settings = get_settings()
        check_connections(settings)
        if airflow_command("db", "migrate", env=env) or airflow_command(
            "pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path", env=env
        ):
            print("Preparing the Airflow metadata DB failed.", file=out)
            return False
        objects = generate_source(settings, args.hours, args.events_per_hour, args.seed)
        print(
            f"Generated {args.hours} hour(s) from {_hour(settings.start_date)} UTC, "
            f"{args.events_per_hour:,} events per hour: {objects} objects in s3://{settings.source.bucket}",
            file=out,
        )
        print("\nDAG runs (airflow dags test):", file=out)
        outcomes = run_dags(planned_runs(settings, args.hours), env, out)
        if any(outcome.state != "success" for outcome in outcomes):
            return False
        report(settings, out)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("--hours", type=int, default=3, help="hours to generate and load")
    parser.add_argument("--events-per-hour", type=int, default=2000, help="events of each hour")
    parser.add_argument("--seed", type=int, default=20240410, help="seed of the generated data")
    parser.add_argument("--home", type=Path, default=DEMO_HOME, help="state folder, recreated on each run")
    args = parser.parse_args()

    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    log_file = args.home / LOG_NAME
    print(f"Clickstream demo on the embedded stack (moto_server + chdb), state in {args.home}")
    print(f"Full Airflow output: {log_file}\n", flush=True)
    with output_to(log_file) as terminal, local_stack.interrupted_by_signals():
        try:
            succeeded = demo(args, terminal)
        except BaseException as error:
            traceback.print_exc()  # into the log; the terminal gets one line
            print(f"\nDemo stopped: {type(error).__name__}: {error}", file=terminal)
            succeeded = False
    print(f"\nFull Airflow output: {log_file}")
    if not succeeded:
        sys.exit(1)


if __name__ == "__main__":
    main()
