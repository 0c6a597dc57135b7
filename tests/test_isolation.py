"""What runs at the same time as a marts refresh, at every step of it, on the real engine.

A refresh is a sequence of statements; the scheduler and the operators may put anything
between two of them. ``StepHook`` runs an action once, right before the refresh's k-th
statement, and each test walks k over every statement from the moment the refresh takes its
version: a truncate of each scope, and a whole second refresh (a manual rebuild beside a
scheduled refresh, an attempt the scheduler lost track of beside its retry). Each time, what
readers see must be exactly what the warehouse holds by the next refresh, and never a mix.
Last, two refresh processes at once against a ClickHouse server (the native-protocol
stand-in), one held in the middle of its version while the other runs from start to end.

The second window gets new content before each step's refresh, so marts that kept an old
version of its hours differ from a full rebuild.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from synthetic_clickstream import upload_hours, write_hour_archives
from test_server_backend import put_for_server

from clickstream import sql
from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.loading import LoadOvertakenByTruncate, WindowLoader, source_bucket
from clickstream.marts import (
    FULL,
    MartsRefreshFenced,
    ensure_marts_schema,
    full_rebuild,
    refresh,
    table_checksums,
)
from clickstream.source import member_name
from clickstream.truncate import truncate
from clickstream.warehouse import ClickHouseHook

START = datetime(2024, 4, 10, 23, tzinfo=UTC)
# Two windows, so that a refresh recomputes part of the marts: one that drops or keeps the
# untouched hour by mistake differs from a full rebuild.
WINDOWS = [START + timedelta(hours=offset) for offset in range(2)]
CHANGED = WINDOWS[-1]
EVENTS_PER_HOUR = 60
# The statement with which a refresh takes its version, and the one with which it reads the
# newest truncate fence just before it commits.
TAKES_VERSION = "select_marts_next_version"
READS_FENCE = "select_marts_fence"


class StepHook:
    """A warehouse hook that runs ``action`` once, right before its ``at``-th statement,
    keeping what it returned, and keeps the names of the statements it ran."""

    def __init__(self, hook: ClickHouseHook, at: int | None = None, action=None):
        self._hook = hook
        self._at = at
        self._action = action
        self.statements: list[str] = []
        self.action_results: list = []

    def __getattr__(self, name):
        return getattr(self._hook, name)

    def run(self, name: str, params: dict | None = None):
        self._step(name)
        return self._hook.run(name, params)

    def load_json_lines(self, *args, **kwargs):
        self._step("load_json_lines")
        return self._hook.load_json_lines(*args, **kwargs)

    def _step(self, name: str) -> None:
        if len(self.statements) == self._at:
            self.action_results.append(self._action())
        self.statements.append(name)


@pytest.fixture
def settings(bucket, chdb_path, project_config, s3_connection):
    project_config(source__bucket=f'"{bucket}"')
    return get_settings()


@pytest.fixture
def hook(settings):
    with ClickHouseHook() as opened:
        ensure_marts_schema(opened, settings)
        yield opened


@pytest.fixture
def reload(hook, settings, s3_client, bucket):
    """Upload ``windows`` with content of ``seed`` and load them through the ingest path."""
    loader = WindowLoader(hook, source_bucket(settings), settings)

    def load(windows: list[datetime], seed: int) -> None:
        for window_start in windows:
            upload_hours(s3_client, bucket, window_start, 1, events_per_hour=EVENTS_PER_HOUR, seed=seed)
            for table in settings.tables:
                loader.load(table, window_start)

    return load


def statements_of_a_refresh(hook, settings) -> list[str]:
    """The statements an incremental refresh runs, in order (it refreshes for real)."""
    recorder = StepHook(hook)
    refresh(recorder, settings)
    return recorder.statements


def steps_from_taking_the_version(statements: list[str]) -> range:
    """Right before the refresh takes its version, up to right before its last statement."""
    return range(statements.index(TAKES_VERSION), len(statements))


def visible_rows(hook, settings) -> int:
    return sum(int(rows.split(":")[0]) for rows in table_checksums(hook, settings).values())


def assert_marts_equal_a_full_rebuild(hook, settings) -> None:
    seen = table_checksums(hook, settings)
    full_rebuild(hook, settings)
    assert seen == table_checksums(hook, settings)


@pytest.mark.parametrize("scope", ["marts", "raw", "all"])
def test_a_truncate_at_any_step_of_a_refresh_leaves_marts_of_exactly_what_is_left(
    hook, settings, reload, scope
):
    reload(WINDOWS, seed=1)
    assert refresh(hook, settings).mode == FULL
    reload([CHANGED], seed=2)
    statements = statements_of_a_refresh(hook, settings)
    assert visible_rows(hook, settings) > 0
    outcomes = {}

    for step in steps_from_taking_the_version(statements):
        reload([CHANGED], seed=10 + step)
        stepped = StepHook(hook, at=step, action=lambda: truncate(hook, settings, scope, False))
        try:
            refresh(stepped, settings)
            outcomes[step] = "committed"
        except MartsRefreshFenced:
            outcomes[step] = "fenced"
        assert stepped.action_results, f"the truncate ran at step {step} ({statements[step]})"
        if step > statements.index(TAKES_VERSION):
            # Whatever the refresh did after the truncate is invisible: the marts are empty.
            assert visible_rows(hook, settings) == 0, f"truncate before {statements[step]}"

        refresh(hook, settings)
        assert_marts_equal_a_full_rebuild(hook, settings)
        if scope != "marts":
            assert visible_rows(hook, settings) == 0, "nothing raw is left to show"
            reload(WINDOWS, seed=1)
            refresh(hook, settings)
        assert visible_rows(hook, settings) > 0

    taken, fence_read = statements.index(TAKES_VERSION), statements.index(READS_FENCE)
    assert outcomes == {
        step: "fenced" if taken < step <= fence_read else "committed"
        for step in steps_from_taking_the_version(statements)
    }


def test_a_second_refresh_at_any_step_of_a_refresh_leaves_both_committed_and_the_marts_right(
    hook, settings, reload
):
    reload(WINDOWS, seed=1)
    assert refresh(hook, settings).mode == FULL
    reload([CHANGED], seed=2)
    statements = statements_of_a_refresh(hook, settings)

    for step in steps_from_taking_the_version(statements):
        reload([CHANGED], seed=10 + step)
        stepped = StepHook(hook, at=step, action=lambda: refresh(hook, settings))

        outer = refresh(stepped, settings)

        assert stepped.action_results, f"the second refresh ran at step {step} ({statements[step]})"
        [beside] = stepped.action_results
        assert outer.loads_applied + beside.loads_applied >= len(settings.tables)
        assert_marts_equal_a_full_rebuild(hook, settings)


def final_windows_without_their_rows(hook, settings) -> list[tuple]:
    """Committed loads (the window's content for readers) whose staged rows are not all there."""
    database = settings.warehouse.database
    found = []
    for table in settings.tables:
        found += hook.backend.execute(
            f"SELECT c.table_name, toString(c.window_start), c.rows, countIf(l.load_id = c.load_id) "
            f"FROM {database}.committed_loads AS c "
            f"LEFT JOIN {database}.{table.loads_table} AS l ON l.window_start = c.window_start "
            f"WHERE c.table_name = '{table.name}' AND c.status = 'loaded' "
            f"GROUP BY c.table_name, c.window_start, c.rows HAVING c.rows != countIf(l.load_id = c.load_id)",
            {},
        )
    return found


@pytest.mark.parametrize("scope", ["marts", "raw", "all"])
def test_a_truncate_at_any_step_of_a_load_never_leaves_a_window_final_without_its_rows(
    hook, settings, reload, scope
):
    reload(WINDOWS, seed=1)
    refresh(hook, settings)
    table = settings.table("browser_events")
    recorder = StepHook(hook)
    WindowLoader(recorder, source_bucket(settings), settings).load(table, CHANGED)
    statements = recorder.statements
    outcomes = {}

    for step in range(len(statements)):
        stepped = StepHook(hook, at=step, action=lambda: truncate(hook, settings, scope, False))
        try:
            result = WindowLoader(stepped, source_bucket(settings), settings).load(table, CHANGED)
            outcomes[step] = "committed" if result.rows else "committed without rows"
        except LoadOvertakenByTruncate:
            outcomes[step] = "overtaken"
        assert stepped.action_results, f"the truncate ran at step {step} ({statements[step]})"

        assert final_windows_without_their_rows(hook, settings) == [], f"truncate before {statements[step]}"
        if scope != "marts":
            reload(WINDOWS, seed=1)

    fence_read = statements.index("select_raw_fence")
    commit_read_back = statements.index("select_load_commit")
    if scope == "marts":
        assert set(outcomes.values()) == {"committed"}, outcomes
    else:
        # A truncate before the load read the raw fence comes first, one after it read back
        # its commit empties the window with its rows; any in between overtakes the load.
        assert outcomes == {
            step: "overtaken" if fence_read < step <= commit_read_back else "committed"
            for step in range(len(statements))
        }


# A marts run as the marts DAG's task runs it, in a process of its own.
REFRESH_PROCESS = (
    "from clickstream.config import get_settings\n"
    "from clickstream.marts import refresh_warehouse\n"
    "print(refresh_warehouse(get_settings()))\n"
)


def test_two_refresh_processes_at_once_on_a_server_both_commit_and_leave_the_marts_right(
    clickhouse_server, project_config, bucket, s3_client, tmp_path
):
    # One hour per chunk, so that a refresh writes several chunks: a second refresh that ran
    # in the middle of the first would find its stage or its rows gone.
    project_config(source__bucket=f'"{bucket}"', marts__chunk_hours="1")
    settings = get_settings()
    with ClickHouseHook() as hook:
        ensure_marts_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        for seed in (1, 2):  # the second round replaces every window: a refresh to run
            for window_start in WINDOWS:
                for table, archive in write_hour_archives(
                    window_start, EVENTS_PER_HOUR, seed, tmp_path
                ).items():
                    with zipfile.ZipFile(archive) as opened:
                        lines = opened.read(member_name(table)).decode().splitlines()
                    put_for_server(s3_client, bucket, window_start, table, lines)
                    loader.load(settings.table(table), window_start)
            if seed == 1:
                assert refresh(hook, settings).mode == FULL
    # The first refresh to write a mart's rows is held there, mid-version, until the other
    # one has run from start to end beside it.
    held = clickhouse_server.hold_reply(
        lambda query, params: query == sql.statement("fill_mart_hourly_events")
    )
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESH_PROCESS],
            env=environment,
            cwd=PROJECT_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    try:
        assert held.executed.wait(timeout=300), "neither refresh reached its first mart"
        deadline = time.monotonic() + 300
        while all(process.poll() is None for process in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        [finished] = [process for process in processes if process.poll() is not None]
        [waiting] = [process for process in processes if process is not finished]
        held.released.set()
        outputs = [process.communicate(timeout=300)[0] for process in (finished, waiting)]
    finally:
        held.released.set()
        for process in processes:
            process.kill()
            process.wait()

    assert [process.returncode for process in (finished, waiting)] == [0, 0], outputs
    with ClickHouseHook() as hook:
        assert_marts_equal_a_full_rebuild(hook, settings)
