"""Shared fixtures: a real S3 endpoint (moto_server on loopback), a real chdb warehouse,
and an Airflow home of the test session's own.

Airflow reads its configuration when first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = PROJECT_ROOT.parent / "shared" / "fixtures" / "npl-sample"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="clickstream-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)
for plugin_path in (PROJECT_ROOT / "plugins", PROJECT_ROOT / "tests"):
    if str(plugin_path) not in sys.path:
        sys.path.insert(0, str(plugin_path))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on port {port} within {timeout}s")


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start moto_server on loopback for the whole session and return its URL."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_connection(s3_endpoint):
    """Expose the local S3 server as the Airflow connection ``clickstream_s3``."""
    os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
        }
    )
    return "clickstream_s3"


@pytest.fixture
def s3_client(s3_connection):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=s3_connection).get_conn()


@pytest.fixture
def bucket(s3_client, request):
    """A fresh, empty bucket for one test."""
    name = f"test-{abs(hash(request.node.nodeid)) % 10**10:010d}-{time.monotonic_ns() % 10**6}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def chdb_path(tmp_path):
    """Point ``clickhouse_default`` at an embedded chdb database in a fresh directory."""
    path = tmp_path / "chdb"
    os.environ["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = json.dumps(
        {"conn_type": "clickhouse", "extra": {"chdb_path": str(path)}}
    )
    yield path
    os.environ.pop("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", None)


@pytest.fixture
def sample_dir():
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"real sample not present at {SAMPLE_DIR} (it lives in shared/, outside the project)")
    return SAMPLE_DIR
