"""Run the real Airflow scheduler and UI (`airflow standalone`) on the embedded local stack.

Starts moto_server on loopback, writes a few generated hours from the configured start
date into the bucket, creates the one-slot `clickhouse` pool that chdb needs (one process
per data directory) and runs `airflow standalone` until Ctrl-C (or SIGTERM), then stops
everything it started: the four Airflow components with their workers, and moto_server.

`airflow standalone` launches its components as `airflow` looked up on PATH, so this
virtualenv's bin/ goes first on the PATH it gets: `make standalone` works from a fresh
clone without an activated virtualenv. `airflow standalone` itself carries on when a
component dies; this script watches them and, when one exits, stops the rest and exits
with a message naming it. Its state lives under .local/standalone (or `--home`) and
survives restarts; `make clean` removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack
import psutil

HOME = local_stack.PROJECT_ROOT / ".local" / "standalone"
API_PORT = 8080
S3_PORT = 4566
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
"""The processes `airflow standalone` starts, each as `airflow <name>`."""
# A component's command line: `.../airflow scheduler`, or its process title once it set one
# (`airflow api_server -- host:... port:...`).
_COMPONENT_COMMAND = re.compile(r"\bairflow (scheduler|dag[-_]processor|triggerer|api[-_]server)\b")
VENV_BIN = Path(sys.executable).parent


class ComponentExited(RuntimeError):
    """`airflow standalone` or one of its components is gone, or never came up."""


def standalone_environment(
    home: Path, s3_endpoint: str, api_port: int, api_host: str = "127.0.0.1", parallelism: int = 4
) -> dict[str, str]:
    """Return the environment of `airflow standalone` on the local stack, state under ``home``.

    :param home: folder for the Airflow home (metadata DB, logs, admin password) and chdb data
    :param s3_endpoint: URL of the local S3 server
    :param api_port: port of the API server (UI and REST API)
    :param api_host: address the API server listens on (loopback: the admin password is a dev one)
    :param parallelism: task slots of the LocalExecutor, one worker process each
    :return: variables to add to the current environment
    """
    env = local_stack.airflow_environment(home / "airflow")
    env["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(s3_endpoint)
    env["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(
        home / "chdb", home / local_stack.MARTS_SNAPSHOTS
    )
    env["AIRFLOW__CORE__PARALLELISM"] = str(parallelism)
    env["AIRFLOW__API__HOST"] = api_host
    env["AIRFLOW__API__PORT"] = str(api_port)
    # Workers reach the execution API under base_url; its default assumes port 8080. It also
    # makes the log links in alerts point here. An IPv4 literal: `localhost` may resolve to ::1
    # first, where nothing listens.
    connect_host = "127.0.0.1" if api_host in ("0.0.0.0", "localhost") else api_host
    env["AIRFLOW__API__BASE_URL"] = f"http://{connect_host}:{api_port}"
    env["PATH"] = os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", os.defpath)])
    return env


def prepare(env: dict[str, str], hours: int, events_per_hour: int) -> None:
    """Write generated hours into the bucket, migrate the metadata DB and create the pool.

    :param env: the environment from :func:`standalone_environment`
    :param hours: hours to generate from the configured start date
    :param events_per_hour: events in each generated hour
    """
    os.environ.update(env)
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from synthetic_clickstream import upload_hours

    from clickstream.config import get_settings

    settings = get_settings()
    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=settings.source.bucket)
    upload_hours(client, settings.source.bucket, settings.start_date, hours, events_per_hour, seed=1)
    local_stack.airflow_cli("db", "migrate", env=env, capture=True)
    local_stack.airflow_cli(
        "pools", "set", settings.warehouse.pool, "1", "chdb: one process per data path", env=env, capture=True
    )


class AirflowStandalone:
    """`airflow standalone` in a process group of its own, watched, and stopped with all it started.

    :param env: the complete environment of the process (PATH must find this virtualenv's `airflow`)
    :param startup_timeout: seconds for all components to start
    :param output: file the components' output goes to; default: this process's own
    """

    def __init__(self, env: dict[str, str], startup_timeout: float = 180.0, output: IO | None = None) -> None:
        self.env = env
        self.startup_timeout = startup_timeout
        self.output = output
        self.process: subprocess.Popen | None = None
        self.components: dict[str, psutil.Process] = {}
        # Every process seen below `airflow standalone`, kept as psutil handles: they refuse to
        # signal a PID that a new process has taken over since.
        self._seen: dict[int, psutil.Process] = {}

    def start(self) -> None:
        """Start `airflow standalone` in a new session, so that its group can be stopped as one."""
        airflow = VENV_BIN / "airflow"
        if not airflow.exists():
            raise ComponentExited(
                f"{airflow} not found: install the virtualenv first (make .venv/.installed)"
            )
        self.process = subprocess.Popen(
            [str(airflow), "standalone"],
            env=self.env,
            start_new_session=True,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output else None,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def check(self) -> None:
        """Raise :class:`ComponentExited` if `airflow standalone` or a component that ran has exited."""
        assert self.process is not None, "not started"
        code = self.process.poll()
        if code is not None:
            raise ComponentExited(f"airflow standalone exited with code {code}; its output is above")
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.pid).children():
                name = _component_name(child)
                if name and name not in self.components:
                    self.components[name] = child
        self._remember_descendants()
        for name, component in self.components.items():
            if not _running(component):
                raise ComponentExited(
                    f"Airflow component {name} (pid {component.pid}) exited; its last lines above, "
                    f"prefixed '{name}', say why"
                )

    def wait_until_started(self, poll_interval: float = 1.0) -> None:
        """Block until all of ``COMPONENTS`` run; raise :class:`ComponentExited` if one dies or never starts."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self.check()
            if set(self.components) >= set(COMPONENTS):
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(set(COMPONENTS) - set(self.components)))
                raise ComponentExited(f"not started within {self.startup_timeout:.0f} s: {missing}")
            time.sleep(poll_interval)

    def wait_until_healthy(self, api_port: int, timeout: float = 300.0) -> None:
        """Block until the API server on ``api_port`` reports a healthy scheduler and DAG processor.

        A task started before the API server answers cannot report to the execution API and
        waits out a retry delay: unpause DAGs and trigger runs only after this returns.
        """
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{api_port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            self.check()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    health = json.load(response)
                if all(
                    (health.get(part) or {}).get("status") == "healthy"
                    for part in ("scheduler", "dag_processor")
                ):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(2)
        raise ComponentExited(f"Airflow was not healthy within {timeout:.0f} s")

    def watch(self, poll_interval: float = 1.0) -> None:
        """Block while everything runs; raise :class:`ComponentExited` as soon as something exits."""
        while True:
            self.check()
            time.sleep(poll_interval)

    def descendants(self) -> set[int]:
        """PIDs of `airflow standalone` and every process below it, as running now."""
        try:
            root = psutil.Process(self.pid)
            return {root.pid, *(child.pid for child in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def _remember_descendants(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.pid)
            for process in (root, *root.children(recursive=True)):
                self._seen.setdefault(process.pid, process)

    def stop(self, timeout: float = 30.0) -> set[int]:
        """Stop the process group with SIGTERM, then SIGKILL whatever is left after ``timeout``.

        Every process ever seen below `airflow standalone` is signalled by PID too, in case
        one left the group. Calling it again does nothing more.

        :param timeout: seconds to wait for a clean exit before SIGKILL
        :return: the PIDs of every process seen below `airflow standalone`
        """
        if self.process is None:
            return set()
        self._remember_descendants()
        processes = [process for process in self._seen.values() if _running(process)]
        if processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.terminate()
            _, alive = psutil.wait_procs(processes, timeout=timeout)
            for process in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(alive, timeout=10)
        self.process.wait(timeout=10)
        return set(self._seen)

    def __enter__(self) -> AirflowStandalone:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _component_name(process: psutil.Process) -> str | None:
    with contextlib.suppress(psutil.Error):
        if match := _COMPONENT_COMMAND.search(" ".join(process.cmdline())):
            return match.group(1).replace("_", "-")
    return None


def _require_free_port(host: str, port: int, option: str) -> None:
    """Exit with a message when something already listens on ``host:port``."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            sys.exit(
                f"standalone: port {port} on {host} is taken ({error.strerror}); choose another with {option}"
            )


def _running(process: psutil.Process) -> bool:
    # `airflow standalone` never reaps its children: a dead one lingers as a zombie.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("--hours", type=int, default=3, help="hours to generate into the bucket")
    parser.add_argument("--events-per-hour", type=int, default=2000, help="events of each hour")
    parser.add_argument("--home", type=Path, default=HOME, help="state folder")
    parser.add_argument("--api-port", type=int, default=API_PORT, help="UI and REST API port")
    parser.add_argument(
        "--api-host",
        default="127.0.0.1",
        help="address the UI listens on; 0.0.0.0 for all",
    )
    parser.add_argument("--s3-port", type=int, default=S3_PORT, help="port of the local S3 server")
    parser.add_argument("--parallelism", type=int, default=4, help="task slots, each a worker process")
    args = parser.parse_args()

    _require_free_port(args.api_host, args.api_port, "--api-port")
    _require_free_port("127.0.0.1", args.s3_port, "--s3-port")
    args.home.mkdir(parents=True, exist_ok=True)
    with local_stack.interrupted_by_signals(), local_stack.moto_server(port=args.s3_port) as endpoint:
        env = standalone_environment(args.home, endpoint, args.api_port, args.api_host, args.parallelism)
        prepare(env, args.hours, args.events_per_hour)
        print(
            f"\nAirflow UI: {env['AIRFLOW__API__BASE_URL']} (user admin; the password is printed "
            f"below and kept in {args.home / 'airflow'}). Unpause clickstream_ingest_hourly, "
            "clickstream_ingest_catchup and clickstream_marts. Ctrl-C stops everything.\n",
            flush=True,
        )
        stack = AirflowStandalone({**os.environ, **env})
        failure = None
        try:
            stack.start()
            stack.wait_until_started()
            print(f"\nstandalone: all components run: {', '.join(sorted(stack.components))}\n", flush=True)
            stack.watch()
        except KeyboardInterrupt:
            print("\nstandalone: stopping", flush=True)
        except ComponentExited as error:
            failure = error
            print(f"\nstandalone: {error}. Stopping everything.", file=sys.stderr, flush=True)
        finally:
            stack.stop()
    if failure is not None:
        sys.exit(1)


if __name__ == "__main__":
    main()
