"""The embedded local stack: S3 from moto_server on loopback, ClickHouse from chdb.

Used by the demo, the standalone scheduler, the benchmarks and the tests, so all of them
reach S3 over real HTTP through the same Airflow connections production uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# SQL that only the benchmarks run, kept out of the production include/sql.
SCRIPTS_SQL_DIR = PROJECT_ROOT / "scripts" / "sql"
# The native-protocol stand-in for a ClickHouse server: a test double, kept with the tests.
FAKE_CLICKHOUSE_SCRIPT = PROJECT_ROOT / "tests" / "fake_clickhouse.py"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` of the project's scripts: the module docstring as written, and every default."""


@contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt for the block, so its clean-up runs.

    Also where SIGINT was ignored at start: a background job of a non-interactive shell (how
    CI systems and supervisors start things) inherits SIGINT ignored, and Python then keeps
    ignoring it. A supervisor's SIGTERM would otherwise end the process at once, leaving
    what it started running.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_to_end(command: list[str], env: dict[str, str], stop_timeout: float = 30.0, output=None) -> int:
    """Run ``command`` in a process group of its own until it exits; return its exit code.

    Interrupted (KeyboardInterrupt, see ``interrupted_by_signals``), it stops the whole group,
    SIGTERM then SIGKILL after ``stop_timeout``, before the interrupt goes on.

    :param output: an open file for the command's stdout and stderr (default: this process's).
    """
    process = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )
    try:
        return process.wait()
    except BaseException:
        stop_group(process, stop_timeout)
        raise


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    # Whatever of the group outlived its leader, or the leader itself, ends now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_listening(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@contextmanager
def moto_server(port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run moto_server on loopback for the duration of the block; yield its endpoint URL."""
    port = port or free_port()
    executable = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_listening(port, process, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


# moto accepts any keys; these dummies only have to be the same wherever the local stack signs.
S3_ACCESS_KEY = "local-access-key"
S3_SECRET_KEY = "local-secret-key"


def s3_connection_uri(endpoint_url: str) -> str:
    """Return an Airflow connection (JSON) for the local S3 server; its keys are moto's dummies."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": S3_ACCESS_KEY,
            "password": S3_SECRET_KEY,
            "extra": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
        }
    )


MARTS_SNAPSHOTS = "marts-snapshots"
"""Folder, in a local stack's home, where its warehouse publishes the marts for the dashboards."""


def chdb_connection_uri(path: Path, marts_snapshot_dir: Path | None = None) -> str:
    """Return an Airflow connection (JSON) for the embedded engine with data at ``path``.

    :param marts_snapshot_dir: where it publishes the marts for readers in other processes
        (the dashboards), if anywhere.
    """
    extra = {"chdb_path": str(path)}
    if marts_snapshot_dir is not None:
        extra["marts_snapshot_dir"] = str(marts_snapshot_dir)
    return json.dumps({"conn_type": "clickhouse", "extra": extra})


def server_connection_uri(port: int, **extra) -> str:
    """Return an Airflow connection (JSON) for the fake ClickHouse server on ``port`` (tests, benchmark)."""
    return json.dumps(
        {
            "conn_type": "clickhouse",
            "host": "127.0.0.1",
            "port": port,
            "login": "loader",
            "password": "server-password",
            "schema": "default",
            "extra": extra,
        }
    )


def airflow_environment(airflow_home: Path) -> dict[str, str]:
    """Return the environment that points Airflow at this project and a home of its own."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "PYTHONPATH": os.pathsep.join(
            [str(PROJECT_ROOT / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }


def airflow_cli(*args: str, env: dict[str, str] | None = None, capture: bool = False) -> str:
    """Run the Airflow CLI of this virtualenv with ``env`` added to the environment.

    :param capture: return the output instead of letting it through.
    """
    executable = Path(sys.executable).with_name("airflow")
    completed = subprocess.run(
        [str(executable), *args],
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=capture,
        text=True,
    )
    return completed.stdout if capture else ""
