"""Reprocess any hour the Airflow way, under the real scheduler (README, "Reprocess a window").

The test runs the README's own `airflow backfill create` and `airflow tasks clear` commands,
as written there, against `airflow standalone` (scheduler, DAG processor, triggerer, API
server; LocalExecutor, the one-slot `clickhouse` pool) on moto_server and chdb. It stops
every process it started by PID (``AirflowStandalone.stop``), then reads the warehouse.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import local_stack
import pytest
import standalone
from synthetic_clickstream import upload_hours
from test_dag_runs import HOURS, START, loaded_row_counts, source_line_counts

from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.warehouse import ClickHouseHook

DAG_ID = "clickstream_ingest_hourly"
RUN_TIMEOUT = 600.0


def readme_command(program: str) -> list[str]:
    """The README's shell command that starts with ``program``, joined across its line breaks."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(rf"^ *({re.escape(program)}(?:.*\\\n)*.*)$", readme, re.MULTILINE)
    assert match, f"the README shows no `{program}` command"
    return shlex.split(match.group(1).replace("\\\n", " "))


class MetadataDB:
    """Read-only view of the stack's Airflow metadata DB (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params) -> list[tuple]:
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as connection:
                return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # busy, or not migrated yet
            return []

    def runs(self, run_type: str) -> dict[str, tuple[str, str]]:
        """{run_id: (logical_date, state)} of the DAG's runs of ``run_type``."""
        return {
            run_id: (logical_date, state)
            for run_id, logical_date, state in self.rows(
                "SELECT run_id, logical_date, state FROM dag_run WHERE dag_id = ? AND run_type = ?",
                DAG_ID,
                run_type,
            )
        }

    def load_tries(self, run_id: str) -> tuple[int, str] | None:
        found = self.rows(
            "SELECT try_number, state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = 'load_window'",
            DAG_ID,
            run_id,
        )
        return found[0] if found else None


def airflow_cli(env: dict[str, str], *args: str) -> str:
    """Run the Airflow CLI against the stack; fail with its output if it fails.

    The metadata DB of `airflow standalone` is SQLite, which the scheduler, the DAG
    processor and the API server write all the time: a CLI write that finds it locked is
    tried again, as an operator would.
    """
    executable = standalone.VENV_BIN / "airflow"
    for _ in range(5):
        completed = subprocess.run(
            [str(executable), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
        )
        if completed.returncode == 0:
            return completed.stdout
        if "database is locked" not in completed.stdout + completed.stderr:
            break
        time.sleep(2)
    pytest.fail(
        f"airflow {' '.join(args)} exited with {completed.returncode}:\n{completed.stdout}\n{completed.stderr[-4000:]}"
    )


def wait_until(airflow: standalone.AirflowStandalone, probe, what: str, log: Path):
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (result := probe()):
        airflow.check()
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
            pytest.fail(f"no {what} within {RUN_TIMEOUT:.0f} s:\n{tail}")
        time.sleep(2)
    return result


def committed_loads_per_window(settings) -> Counter:
    """How many loads committed (`loaded`) each window of each table, from the ingest log."""
    with ClickHouseHook() as hook:
        rows = hook.backend.execute(
            "SELECT table_name, toString(window_start), count() FROM clickstream.ingest_log "
            "WHERE status = 'loaded' GROUP BY table_name, window_start",
            {},
        )
    return Counter({(table, window): int(count) for table, window, count in rows})


def test_a_backfill_gives_each_hour_a_run_and_clearing_one_reloads_exactly_its_window(
    tmp_path, s3_endpoint, s3_client, bucket, project_config, monkeypatch
):
    project_config(source__bucket=f'"{bucket}"', ingest__retries="0")
    settings = get_settings()
    upload_hours(s3_client, bucket, START, len(HOURS), events_per_hour=60, seed=21)
    home = tmp_path / "stack"
    api_port = local_stack.free_port()
    stack_env = standalone.standalone_environment(home, s3_endpoint, api_port, parallelism=2)
    for command in (
        ["db", "migrate"],
        ["pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path"],
    ):
        airflow_cli(stack_env, *command)
    metadata = MetadataDB(home / "airflow" / "airflow.db")
    backfill, clear = readme_command("airflow backfill create"), readme_command("airflow tasks clear")
    cleared_window = datetime.fromisoformat(clear[clear.index("-s") + 1])
    assert clear[clear.index("-e") + 1] == cleared_window.isoformat()
    log = tmp_path / "airflow.log"

    with (
        log.open("ab") as sink,
        standalone.AirflowStandalone({**os.environ, **stack_env}, output=sink) as airflow,
    ):
        airflow.wait_until_healthy(api_port)
        airflow_cli(stack_env, "dags", "unpause", DAG_ID)
        airflow_cli(stack_env, *backfill[1:])

        runs = wait_until(
            airflow,
            lambda: (
                (found := metadata.runs("backfill"))
                and len(found) == len(HOURS)
                and all(state == "success" for _, state in found.values())
                and found
            ),
            "three successful backfill runs",
            log,
        )
        # One run per hour: its logical date is the window's start, its name the window's end.
        assert sorted((logical_date, run_id) for run_id, (logical_date, _) in runs.items()) == [
            (
                f"{hour:%Y-%m-%d %H:%M:%S}.000000",
                f"backfill__{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%S+00:00}",
            )
            for hour in HOURS
        ]
        cleared_run = f"backfill__{cleared_window + timedelta(hours=1):%Y-%m-%dT%H:%M:%S+00:00}"
        first_try, _ = metadata.load_tries(cleared_run)

        airflow_cli(stack_env, *clear[1:])

        wait_until(
            airflow,
            lambda: (
                (tries := metadata.load_tries(cleared_run))
                and tries[0] > first_try
                and tries[1] == "success"
                and metadata.runs("backfill")[cleared_run][1] == "success"
            ),
            f"a second successful load_window in {cleared_run}",
            log,
        )
        other_tries = {run: metadata.load_tries(run) for run in runs if run != cleared_run}
        assert all(tries == (1, "success") for tries in other_tries.values()), other_tries

    monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", stack_env["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"])
    loads = committed_loads_per_window(settings)
    windows = {hour.strftime("%Y-%m-%d %H:%M:%S"): hour for hour in HOURS}
    # Each table of each hour was loaded by its backfill run; the cleared hour once more.
    assert loads == Counter(
        {
            (table, window): 2 if hour == cleared_window else 1
            for table in settings.table_names
            for window, hour in windows.items()
        }
    )
    # Replaced, not added to: every window holds exactly its source lines.
    assert loaded_row_counts(settings) == source_line_counts(s3_client, bucket, settings)
