"""Loads killed with SIGKILL at each named point of their work, on moto_server and chdb.

The child reports that it is stopped at the point (blocked inside the insert after a given
number of rows, before or after a statement, or, on the server stand-in, after the server ran
the commit and before its reply) and only then is killed, so each point has one outcome.

Each test commits a window, starts a second load of it in a child process
(``killable_load.py``), kills the child at a point of that load, and then, in this process
(chdb admits one process per data path, so only once the child is dead), checks that the
window shows its previous or its new content exactly, that the attempt is on record, and
that the next load of the window and a sweep leave no staged rows behind.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from killable_load import MID_INSERT_ROWS
from source_objects import put_object, put_table, zip_bytes
from test_ingest import HOUR, browser_lines

from clickstream import clock, sql
from clickstream.config import get_settings
from clickstream.loading import WindowLoader, ensure_schema, source_bucket, sweep_orphaned_loads
from clickstream.warehouse import ClickHouseHook

CHILD = Path(__file__).with_name("killable_load.py")
# The child's deadline: long enough for a load on a busy machine. The sweep then runs with a
# 1-second one, as if the killed attempt's deadline had long passed (waiting it out would
# make each case last as long).
CHILD_DEADLINE_SECONDS = 60
SWEEP_DEADLINE = timedelta(seconds=1)
WINDOW = "2024-04-10 23:00:00"
# More rows than the child lets through to the engine when it stops it inside the insert.
LARGE_OBJECT_LINES = 400_000
_ID_PREFIX = "00000000-0000-4000-8000-"


@pytest.fixture(scope="module")
def large_object() -> bytes:
    """A ZIP of LARGE_OBJECT_LINES browser events (ids from 10,000,000), made once per module."""
    template = (
        '{"event_id": "' + _ID_PREFIX + '%012d", "event_timestamp": "2024-04-10 23:10:00.123456", '
        '"event_type": "pageview", "click_id": "10000000-0000-4000-8000-000000000001", '
        '"browser_name": "Chrome", "browser_user_agent": "Mozilla/5.0", "browser_language": "en_US"}\n'
    )
    text = "".join(template % n for n in range(10_000_000, 10_000_000 + LARGE_OBJECT_LINES))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("browser_events.jsonl", text)
    return buffer.getvalue()


@pytest.fixture
def settings(bucket, chdb_path, project_config, s3_connection):
    """The test bucket and warehouse, with a short load deadline; the child reads the same file."""
    project_config(source__bucket=f'"{bucket}"', ingest__load_deadline_seconds=str(CHILD_DEADLINE_SECONDS))
    return get_settings()


def event_ids(hook) -> list[str]:
    rows = hook.backend.execute(
        "SELECT toString(event_id) FROM clickstream.browser_events "
        "WHERE window_start = {window:String} ORDER BY event_id",
        {"window": WINDOW},
    )
    return [event_id for (event_id,) in rows]


def ids(start: int, count: int) -> list[str]:
    return [f"{_ID_PREFIX}{n:012d}" for n in range(start, start + count)]


def staged_rows(hook) -> dict[str, int]:
    rows = hook.backend.execute(
        "SELECT toString(load_id), count() FROM clickstream.browser_events_loads GROUP BY load_id", {}
    )
    return {load_id: int(count) for load_id, count in rows}


def attempts(hook) -> dict[str, list[str]]:
    """Statuses of each load of the window, in the order written."""
    rows = hook.backend.execute(
        "SELECT toString(load_id), groupArray(status) FROM "
        "(SELECT load_id, status FROM clickstream.ingest_log ORDER BY finished_at) GROUP BY load_id",
        {},
    )
    return {load_id: list(statuses) for load_id, statuses in rows}


class Child:
    """The load in its own process; ``kill`` sends SIGKILL and waits until the process is gone."""

    def __init__(self, point: str, log_path: Path):
        read_end, write_end = os.pipe()
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), "browser_events", HOUR.isoformat(), point, str(write_end)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=(write_end,),
            )
        os.close(write_end)
        self.reports = os.fdopen(read_end)

    def wait_for(self, point: str) -> None:
        line = self.reports.readline().strip()
        if line != f"at {point}":
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"child said {line!r} instead of 'at {point}':\n{self.log_path.read_text()[-3000:]}"
            )

    def release(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.reports.close()
        self.process.stdin.close()
        assert self.process.returncode == -signal.SIGKILL


# (point, the content the window must show after the kill, how many rows the killed load
#  leaves staged). The child reports that it is stopped at the point before it is killed, so
#  each outcome is the one that point must give.
KILL_POINTS = [
    pytest.param("started", "previous", 0, id="after-started-row-before-insert"),
    pytest.param("mid-insert", "previous", MID_INSERT_ROWS, id="inside-insert-after-two-blocks"),
    pytest.param("staged", "previous", 25, id="after-insert-before-commit"),
    pytest.param("committing", "previous", 25, id="before-commit-is-sent"),
    pytest.param("committed", "new", 25, id="after-commit-before-clean-up"),
    pytest.param("cleaning", "previous", 25, id="failed-after-insert-before-its-clean-up"),
]


@pytest.mark.parametrize(("point", "outcome", "staged"), KILL_POINTS)
def test_a_load_killed_at_any_point_leaves_the_window_whole_and_no_rows_behind(
    s3_client, bucket, settings, large_object, tmp_path, monkeypatch, point, outcome, staged
):
    previous, new, third = ids(0, 40), ids(300, 25), ids(900, 30)
    put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        WindowLoader(hook, source_bucket(settings), settings).load(settings.table("browser_events"), HOUR)
        assert event_ids(hook) == previous
        committed_before = set(attempts(hook))

    body = (
        large_object if point == "mid-insert" else zip_bytes("browser_events.jsonl", browser_lines(25, 300))
    )
    put_object(s3_client, bucket, HOUR, "browser_events", body)
    child = Child(point, tmp_path / "child.log")
    child.wait_for(f"{point} {MID_INSERT_ROWS}" if point == "mid-insert" else point)
    child.kill()

    with ClickHouseHook() as hook:
        [killed] = set(attempts(hook)) - committed_before
        statuses = attempts(hook)[killed]
        shown = event_ids(hook)
        committed = "loaded" in statuses
        assert shown == {"previous": previous, "new": new}[outcome]
        assert committed == (outcome == "new")
        # The attempt is on record from its start, whatever point it was killed at.
        finished = ["failed"] if point == "cleaning" else ["loaded"] if committed else []
        assert statuses == ["started", *finished]
        assert staged_rows(hook).get(killed, 0) == staged

        # The next load of the window shows exactly its object; a sweep, once the killed
        # attempt is past its deadline, leaves no staged rows but the committed load's.
        put_table(s3_client, bucket, HOUR, "browser_events", browser_lines(30, 900))
        WindowLoader(hook, source_bucket(settings), settings).load(settings.table("browser_events"), HOUR)
        assert event_ids(hook) == third
        started_at = datetime.fromisoformat(
            hook.backend.execute(
                "SELECT toString(min(started_at)) FROM clickstream.ingest_log WHERE load_id = {load_id:UUID}",
                {"load_id": killed},
            )[0][0]
        ).replace(tzinfo=UTC)
        # The sweep judges the killed attempt by the bundle's clock: set it past its deadline.
        monkeypatch.setattr(clock, "now", lambda: started_at + 2 * SWEEP_DEADLINE)
        swept = replace(settings, ingest=replace(settings.ingest, load_deadline_seconds=1))
        sweep_orphaned_loads(hook, swept, older_than=SWEEP_DEADLINE)
        assert sum(staged_rows(hook).values()) == len(third)
        assert event_ids(hook) == third
        assert attempts(hook)[killed] == statuses, "the killed attempt stays on record"


def test_a_load_killed_inside_its_commit_on_a_server_shows_the_new_content(
    s3_client, bucket, project_config, clickhouse_server, tmp_path, monkeypatch
):
    """The commit ran on the server, its reply never reached the loader: the window is new.

    The server holds the reply to the commit, so the kill lands after the server wrote the
    commit row and before the loader heard of it: the one point inside a single-row commit
    where the two sides disagree.
    """
    from test_server_backend import put_for_server

    project_config(source__bucket=f'"{bucket}"', ingest__load_deadline_seconds=str(CHILD_DEADLINE_SECONDS))
    settings = get_settings()
    new, third = ids(300, 25), ids(900, 30)
    put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(40))
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        WindowLoader(hook, source_bucket(settings), settings).load(settings.table("browser_events"), HOUR)
        committed_before = set(attempts(hook))
    put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(25, 300))
    held = clickhouse_server.hold_reply(
        lambda query, params: query == sql.statement("insert_ingest_log_commit")
    )

    child = Child("committing", tmp_path / "child.log")
    child.wait_for("committing")
    child.release()
    assert held.executed.wait(timeout=CHILD_DEADLINE_SECONDS), "the commit never reached the server"
    child.kill()
    held.released.set()

    with ClickHouseHook() as hook:
        [killed] = set(attempts(hook)) - committed_before
        assert attempts(hook)[killed] == ["started", "loaded"]
        assert event_ids(hook) == new
        assert staged_rows(hook)[killed] == 25
        put_for_server(s3_client, bucket, HOUR, "browser_events", browser_lines(30, 900))
        WindowLoader(hook, source_bucket(settings), settings).load(settings.table("browser_events"), HOUR)
        assert event_ids(hook) == third
        assert sum(staged_rows(hook).values()) == len(third), "the next load cleans the killed one up"
