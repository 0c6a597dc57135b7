"""Shared fixtures: a real S3 endpoint (moto_server on loopback), a real chdb warehouse,
and an Airflow home of the test session's own.

Airflow reads its configuration when first imported, so the environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = PROJECT_ROOT.parent / "shared" / "fixtures" / "npl-sample"

for import_path in (PROJECT_ROOT / "plugins", PROJECT_ROOT / "scripts", PROJECT_ROOT / "tests"):
    if str(import_path) not in sys.path:
        sys.path.insert(0, str(import_path))

import local_stack  # noqa: E402

pytest_plugins = ["telegram_server", "ci_no_skips"]

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="clickstream-airflow-home-"))
os.environ.update(local_stack.airflow_environment(AIRFLOW_HOME))
os.environ.pop("CLICKSTREAM_CONFIG", None)


@pytest.fixture(scope="session")
def s3_endpoint():
    """Run moto_server on loopback for the whole session and return its URL."""
    with local_stack.moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3_connection(s3_endpoint):
    """Expose the local S3 server as the Airflow connection ``clickstream_s3``."""
    os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(s3_endpoint)
    return "clickstream_s3"


@pytest.fixture
def s3_client(s3_connection):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=s3_connection).get_conn()


@pytest.fixture
def bucket(s3_client):
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def chdb_path(tmp_path):
    """Point ``clickhouse_default`` at an embedded chdb database in a fresh directory."""
    path = tmp_path / "chdb"
    os.environ["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"] = local_stack.chdb_connection_uri(path)
    yield path
    os.environ.pop("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", None)


@pytest.fixture
def sample_dir():
    if not SAMPLE_DIR.is_dir():
        # Fails instead under CI=true (tests/ci_no_skips.py): these are the only checks against
        # independently published counts.
        pytest.skip(f"real sample not present at {SAMPLE_DIR} (it lives in shared/, outside the project)")
    return SAMPLE_DIR


class FrozenClock:
    """The bundle's clock (``clickstream.clock.now``) held at one instant until a test moves it."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@pytest.fixture
def frozen_clock(monkeypatch):
    """Freeze the bundle's clock at a fixed half past the hour, for the test and the code it runs.

    ``dag.test()`` runs tasks in this process, so the DAGs' tasks read the same clock: a test
    never races the wall clock across an hour boundary.
    """
    from clickstream import clock

    frozen = FrozenClock(datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
    monkeypatch.setattr(clock, "now", frozen)
    return frozen


@pytest.fixture
def warehouse_clock(monkeypatch) -> dict[str, timedelta]:
    """Move the warehouse's clock as the bundle reads it (``clickstream.clock.warehouse_now``)
    by ``["by"]``: retry delays and the age of leftovers follow it. Rows stay stamped by the
    engine itself, so moving it forward is time passing for what was written."""
    from clickstream import clock

    shift = {"by": timedelta(0)}
    warehouse_now = clock.warehouse_now

    def shifted(hook) -> str:
        return (datetime.fromisoformat(warehouse_now(hook)) + shift["by"]).strftime("%Y-%m-%d %H:%M:%S.%f")

    monkeypatch.setattr(clock, "warehouse_now", shifted)
    return shift


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the session's metadata DB (SQLite in AIRFLOW_HOME) once; DAG runs need it."""
    local_stack.airflow_cli("db", "migrate", capture=True)


@pytest.fixture
def project_config(tmp_path, monkeypatch):
    """Return a function that writes the default config with some keys changed and selects it.

    Keys are given as ``section__key=value`` (or ``key=value`` at top level) and written as
    TOML literals; the DAG files read the file named by ``CLICKSTREAM_CONFIG`` when parsed.
    """
    from clickstream.config import DEFAULT_CONFIG_PATH

    def write(**overrides: str) -> Path:
        text = DEFAULT_CONFIG_PATH.read_text()
        for dotted, literal in overrides.items():
            section, _, key = dotted.rpartition("__")
            header = re.search(rf"^\[{section}\]$", text, re.MULTILINE) if section else None
            start = header.end() if header else 0
            pattern = re.compile(rf"^{key} = .*$", re.MULTILINE)
            match = pattern.search(text, start)
            assert match, f"no key {dotted} in {DEFAULT_CONFIG_PATH}"
            text = text[: match.start()] + f"{key} = {literal}" + text[match.end() :]
        path = tmp_path / "clickstream.toml"
        path.write_text(text)
        monkeypatch.setenv("CLICKSTREAM_CONFIG", str(path))
        return path

    return write


@pytest.fixture
def clickhouse_server(tmp_path, s3_connection, monkeypatch):
    """Point ``clickhouse_default`` at a ClickHouse server on loopback (the fake of
    ``tests/fake_clickhouse.py``: the native protocol in front of chdb) and return it.

    The engine behind it reads the bucket with the credentials of this process's environment,
    the way a server uses its own: the local S3 server's dummy keys, never sent by a client.
    """
    from fake_clickhouse import FakeClickHouse

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", local_stack.S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", local_stack.S3_SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with FakeClickHouse(tmp_path / "server-chdb", user="loader", password="server-password") as server:
        monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", local_stack.server_connection_uri(server.port))
        yield server


@pytest.fixture
def settings(bucket, s3_connection):
    """The default settings, reading from this test's bucket."""
    from dataclasses import replace

    from clickstream.config import get_settings

    base = get_settings()
    return replace(base, source=replace(base.source, bucket=bucket))


@pytest.fixture
def warehouse(chdb_path, settings):
    """An open hook on a fresh embedded warehouse with the raw layer created."""
    from clickstream.loading import ensure_schema
    from clickstream.warehouse import ClickHouseHook

    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        yield hook


@pytest.fixture
def loader(warehouse, settings):
    """A WindowLoader from this test's bucket into its warehouse."""
    from clickstream.loading import WindowLoader, source_bucket

    return WindowLoader(warehouse, source_bucket(settings), settings)
