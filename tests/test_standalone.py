"""`make standalone`: the real Airflow components on the local stack, started as from a fresh clone.

Each test runs ``scripts/standalone.py`` (what `make standalone` runs) in a shell environment
without this virtualenv's bin/ on PATH and without the test session's Airflow settings, on
free ports, with its state in a temporary folder. It remembers every process the script
starts (moto_server, `airflow standalone`, the four components and their workers) and at the
end checks that none is left; a failed test kills them by PID.

Startup takes 60-90 s on two busy cores; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import local_stack
import psutil
import pytest
import standalone as standalone_script
from processes import ProcessTree, fresh_shell_environment, ignore_sigint, running

SCRIPT = local_stack.PROJECT_ROOT / "scripts" / "standalone.py"
STARTUP_TIMEOUT = 360.0
STOP_TIMEOUT = 120.0
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TRUNCATE = "clickstream_truncate"


class StandaloneRun:
    """``scripts/standalone.py`` running in a session of its own, and every process seen below it.

    :param home: state folder of the run
    :param output: file receiving the script's stdout and stderr
    """

    def __init__(self, home: Path, output: Path, sigint_ignored: bool = False) -> None:
        self.home = home
        self.api_port = local_stack.free_port()
        self.s3_port = local_stack.free_port()
        self.output = output
        env = fresh_shell_environment()
        assert not any(Path(entry, "airflow").exists() for entry in env["PATH"].split(os.pathsep)), (
            "an `airflow` on PATH would hide the bug this test guards against"
        )
        with output.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    "--home",
                    str(home),
                    "--api-port",
                    str(self.api_port),
                    "--s3-port",
                    str(self.s3_port),
                    "--parallelism",
                    "2",
                    "--hours",
                    "1",
                ],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                # A terminal's Ctrl-C goes to the foreground process group: the script's own.
                start_new_session=True,
                preexec_fn=ignore_sigint if sigint_ignored else None,
            )
        self.tree = ProcessTree(self.process)

    @property
    def seen(self) -> dict[int, psutil.Process]:
        return self.tree.seen

    def remember(self) -> None:
        self.tree.remember()

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``probe`` every second until it returns something truthy; fail if the script exits first."""
        deadline = time.monotonic() + timeout
        while True:
            self.remember()
            if result := probe():
                return result
            if self.process.poll() is not None:
                pytest.fail(f"script exited with {self.process.returncode} before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(1)

    def health(self) -> dict | None:
        """The API server's health JSON, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def airflow_cli(self, *args: str) -> str:
        """Run the Airflow CLI against this run's metadata DB and DAGs, as an operator would."""
        env = standalone_script.standalone_environment(
            self.home, f"http://127.0.0.1:{self.s3_port}", self.api_port
        )
        return local_stack.airflow_cli(*args, env=env, capture=True)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Read the run's metadata DB (SQLite); [] while it is busy."""
        database = self.home / "airflow" / "airflow.db"
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
                return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []

    def processes(self, command: str) -> list[psutil.Process]:
        """Processes seen whose command line holds ``airflow <command>``."""
        pattern = re.compile(rf"\bairflow {re.escape(command)}$")
        found = []
        for process in self.seen.values():
            try:
                if pattern.search(" ".join(process.cmdline())):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def leftovers(self) -> list[psutil.Process]:
        return self.tree.leftovers()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill_all(self) -> None:
        self.tree.kill_all()


def _all_healthy(health: dict | None) -> dict | None:
    if health and all((health.get(name) or {}).get("status") == "healthy" for name in HEALTHY_COMPONENTS):
        return health
    return None


@pytest.fixture
def start_standalone(tmp_path):
    """Start the script (once per test); whatever it started is killed by PID at the end."""
    runs: list[StandaloneRun] = []

    def start(sigint_ignored: bool = False) -> StandaloneRun:
        runs.append(StandaloneRun(tmp_path / "standalone", tmp_path / "standalone.log", sigint_ignored))
        return runs[-1]

    yield start
    for run in runs:
        run.kill_all()


def test_standalone_serves_the_api_runs_the_scheduler_and_stops_everything(start_standalone):
    # Started as CI systems and supervisors start a background job: with SIGINT ignored.
    # Ctrl-C must stop it all the same.
    standalone = start_standalone(sigint_ignored=True)
    health = standalone.wait_for(
        lambda: _all_healthy(standalone.health()), STARTUP_TIMEOUT, "healthy API, scheduler and others"
    )
    assert health["scheduler"]["status"] == "healthy"
    # Alive, not a stale row: the scheduler keeps heartbeating.
    first_beat = health["scheduler"]["latest_scheduler_heartbeat"]
    standalone.wait_for(
        lambda: (
            (later := _all_healthy(standalone.health()))
            and later["scheduler"]["latest_scheduler_heartbeat"] > first_beat
        ),
        60,
        "a newer scheduler heartbeat",
    )
    [scheduler] = standalone.processes("scheduler")
    assert running(scheduler)
    for command in ("standalone", "dag-processor", "triggerer"):
        assert standalone.processes(command), f"no `airflow {command}` seen"

    # The truncate DAG runs when triggered, with no unpausing first (a dry run changes nothing).
    [(paused,)] = standalone.wait_for(
        lambda: standalone.query("SELECT is_paused FROM dag WHERE dag_id = ?", TRUNCATE),
        STARTUP_TIMEOUT,
        f"{TRUNCATE} parsed",
    )
    assert paused == 0
    standalone.airflow_cli(
        "dags",
        "trigger",
        TRUNCATE,
        "--run-id",
        "operator_dry_run",
        "--conf",
        json.dumps({"confirm": "clickstream", "dry_run": True}),
    )
    standalone.wait_for(
        lambda: standalone.query(
            "SELECT 1 FROM dag_run WHERE dag_id = ? AND run_id = ? AND state = 'success'",
            TRUNCATE,
            "operator_dry_run",
        ),
        STARTUP_TIMEOUT,
        f"a successful {TRUNCATE} run",
    )

    os.killpg(standalone.process.pid, signal.SIGINT)  # Ctrl-C

    assert standalone.process.wait(timeout=STOP_TIMEOUT) == 0, standalone.tail()
    assert "standalone: stopping" in standalone.text()
    assert standalone.leftovers() == []
    assert len(standalone.seen) >= 7  # script, moto_server, `airflow standalone`, four components


def test_standalone_stops_everything_on_sigterm(start_standalone):
    """A supervisor's SIGTERM, to the script's PID only, stops everything it started."""
    standalone = start_standalone(sigint_ignored=True)
    standalone.wait_for(
        lambda: "standalone: all components run" in standalone.text(), STARTUP_TIMEOUT, "all components"
    )

    standalone.process.send_signal(signal.SIGTERM)

    assert standalone.process.wait(timeout=STOP_TIMEOUT) == 0, standalone.tail()
    assert "standalone: stopping" in standalone.text()
    assert standalone.leftovers() == []
    assert len(standalone.seen) >= 7


def test_standalone_stops_everything_when_a_component_dies(start_standalone):
    standalone = start_standalone()
    standalone.wait_for(
        lambda: "standalone: all components run" in standalone.text(), STARTUP_TIMEOUT, "all components"
    )
    [scheduler] = standalone.processes("scheduler")

    scheduler.kill()

    assert standalone.process.wait(timeout=STOP_TIMEOUT) == 1, standalone.tail()
    assert f"Airflow component scheduler (pid {scheduler.pid}) exited" in standalone.text()
    assert standalone.leftovers() == []
