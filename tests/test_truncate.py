"""The truncate DAG and ``clickstream.truncate`` on the real engine (chdb) and a real local S3.

Every test starts from a warehouse filled through the ingest path: two generated hours
uploaded to a test bucket, loaded by ``WindowLoader`` and refreshed into the marts. chdb
allows one open data path per process, so every hook is closed before a DAG runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError
from synthetic_clickstream import upload_hours

from clickstream import truncate
from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.loading import WindowLoader, source_bucket
from clickstream.marts import FULL, MARTS, ensure_marts_schema, refresh, table_checksums, watermark_is_empty
from clickstream.warehouse import ClickHouseHook

DAG_ID = "clickstream_truncate"
DATABASE = "clickstream"
START = datetime(2024, 4, 10, 23, tzinfo=UTC)
WINDOWS = [START + timedelta(hours=offset) for offset in range(2)]
EVENTS_PER_HOUR = 200
SEED = 17

# Hard-coded on purpose: a change to owned_tables that drops (or adds) a table fails here.
WATERMARK = "marts_applied_loads"
PENDING_COMMITS = "marts_pending_commits"
RAW_TABLES = frozenset(
    {
        "browser_events_loads",
        "device_events_loads",
        "geo_events_loads",
        "location_events_loads",
        "ingest_log",
        WATERMARK,
    }
)
# The marts readers query are views over these tables (create_mart_views.sql): emptying the
# tables empties the views.
MART_TABLES = frozenset(
    {
        "mart_hourly_events_versions",
        "mart_leading_pages_versions",
        "mart_purchases_by_source_versions",
        "mart_users_by_source_versions",
        "mart_purchases_by_region_versions",
        "marts_versions",
        PENDING_COMMITS,
        "marts_window_hours",
        WATERMARK,
    }
)
SCOPE_TABLES = {"all": RAW_TABLES | MART_TABLES, "raw": RAW_TABLES, "marts": MART_TABLES}
# Never emptied: each truncate adds a fence before and after it empties (see truncate.py).
FENCES = "truncations"
SCOPES = [pytest.param(scope, id=scope) for scope in ("all", "raw", "marts")]


@dataclass(frozen=True)
class Snapshot:
    """What the warehouse holds: every table's rows, every object's name, checksums."""

    counts: dict[str, int]
    objects: frozenset[str]
    marts: dict[str, str]
    raw: dict[str, list[list]]


def object_names(hook: ClickHouseHook, database: str = DATABASE) -> frozenset[str]:
    """Every table and view of ``database``."""
    query = "SELECT name FROM system.tables WHERE database = {database:String}"
    return frozenset(name for (name,) in hook.backend.execute(query, {"database": database}))


def row_counts(hook: ClickHouseHook, database: str = DATABASE) -> dict[str, int]:
    """Exact row count of every table (not view) of ``database``."""
    query = (
        "SELECT name FROM system.tables "
        "WHERE database = {database:String} AND NOT is_temporary AND engine NOT LIKE '%View'"
    )
    names = [name for (name,) in hook.backend.execute(query, {"database": database})]
    return {
        name: int(hook.run("select_row_count", {"database": database, "table": name})[0][0]) for name in names
    }


def raw_checksums(hook: ClickHouseHook, settings) -> dict[str, list[list]]:
    return {
        table: hook.run("select_raw_checksum", {"database": DATABASE, "table": table})
        for table in settings.table_names
    }


def snapshot(hook: ClickHouseHook, settings) -> Snapshot:
    return Snapshot(
        counts=row_counts(hook),
        objects=object_names(hook),
        marts=table_checksums(hook, settings),
        raw=raw_checksums(hook, settings),
    )


def take_snapshot(settings) -> Snapshot:
    with ClickHouseHook() as hook:
        return snapshot(hook, settings)


def load_windows(hook: ClickHouseHook, settings) -> None:
    """Load every table of every window through the ingest path."""
    loader = WindowLoader(hook, source_bucket(settings), settings)
    for window_start in WINDOWS:
        for table in settings.tables:
            loader.load(table, window_start)


def fences_written(scope: str) -> int:
    """Two marts fences per truncate (before and after), two raw fences if it empties the raw layer."""
    return 4 if scope in ("raw", "all") else 2


def emptied(before: dict[str, int], scope: str, truncates: int = 1) -> dict[str, int]:
    """The counts expected after ``scope`` is emptied ``truncates`` times: its tables at 0,
    its fences more per truncate, the rest unchanged."""
    counts = {name: 0 if name in SCOPE_TABLES[scope] else rows for name, rows in before.items()}
    counts[FENCES] += fences_written(scope) * truncates
    return counts


@pytest.fixture
def settings(bucket, chdb_path, project_config, s3_connection):
    """The bundle pointed at the test bucket and a fresh chdb warehouse."""
    project_config(source__bucket=f'"{bucket}"')
    return get_settings()


@pytest.fixture
def before(settings, s3_client, bucket) -> Snapshot:
    """Two hours loaded and refreshed into the marts; the warehouse's state, hooks closed."""
    upload_hours(s3_client, bucket, START, len(WINDOWS), events_per_hour=EVENTS_PER_HOUR, seed=SEED)
    with ClickHouseHook() as hook:
        ensure_marts_schema(hook, settings)
        load_windows(hook, settings)
        assert refresh(hook, settings).mode == FULL
        state = snapshot(hook, settings)
    # Every product table holds rows, so "emptied" and "unchanged" can be told apart; but
    # the marts' queue, which the refresh has just emptied by applying every commit in it.
    assert set(state.counts) == SCOPE_TABLES["all"] | {FENCES}
    assert all(state.counts[name] > 0 for name in SCOPE_TABLES["all"] - {PENDING_COMMITS}), state.counts
    assert state.counts[PENDING_COMMITS] == state.counts[FENCES] == 0
    # Each load writes its started row and its commit row.
    assert state.counts["ingest_log"] == 2 * len(WINDOWS) * len(settings.tables)
    return state


@pytest.fixture
def run_truncate(airflow_db, settings):
    """Run the real DAG with ``dag.test()``; the DAG file reads the test config when parsed."""

    def run(conf: dict | None):
        bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
        assert bag.import_errors == {}
        return bag.dags[DAG_ID].test(run_conf=conf)

    return run


def task_instances(dag_run) -> dict:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


def report_of(dag_run) -> list[dict] | None:
    """The XCom return value of ``empty_tables``."""
    return task_instances(dag_run)["empty_tables"].xcom_pull(task_ids="empty_tables")


def test_truncate_dag_is_created_unpaused_so_a_trigger_runs_at_once(airflow_db):
    from airflow.configuration import conf
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.dags[DAG_ID].is_paused_upon_creation is False

    # What the DAG processor does with the DAGs of its bundle when it first sees them.
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)

    with create_session() as session:
        assert session.get(DagModel, DAG_ID).is_paused is False
    # ... where Airflow's default would have paused it.
    assert conf.getboolean("core", "dags_are_paused_at_creation") is True


def truncate_dag_runs() -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == DAG_ID))


def refusal(confirm, scope: str = "all") -> str:
    with pytest.raises(truncate.TruncateRefused) as refused:
        truncate.check_request(confirm, scope, DATABASE)
    return str(refused.value)


# --- the product's table list -------------------------------------------------------------


@pytest.mark.parametrize("scope", SCOPES)
def test_each_scope_owns_exactly_its_tables_watermark_first(scope):
    tables = truncate.owned_tables(get_settings(), scope)

    assert set(tables) == SCOPE_TABLES[scope]
    assert len(tables) == len(set(tables))
    # The watermark goes first: a run stopped half-way leaves it empty, so the next
    # marts refresh rebuilds in full instead of trusting half-emptied tables.
    assert tables[0] == WATERMARK


# --- a wrong or missing confirm changes nothing --------------------------------------------


@pytest.mark.parametrize(
    "confirm",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("wrong", id="wrong"),
        pytest.param("CLICKSTREAM", id="other-case"),
        pytest.param(" clickstream", id="padded"),
    ],
)
def test_check_request_refuses_anything_but_the_database_name_and_says_what_to_type(confirm):
    message = refusal(confirm)

    assert f"confirm is {confirm!r}" in message
    assert 'trigger again with {"confirm": "clickstream"}' in message


def test_check_request_refuses_an_unknown_scope_and_accepts_the_database_name():
    assert "scope 'everything' is not one of all, raw, marts" in refusal(DATABASE, scope="everything")
    for scope in truncate.SCOPES:
        assert truncate.check_request(DATABASE, scope, DATABASE) is None


def test_wrong_confirm_fails_the_run_before_touching_data(before, run_truncate, settings, capfd):
    dag_run = run_truncate({"confirm": "wrong"})

    tis = task_instances(dag_run)
    assert dag_run.state == "failed"
    assert tis["check_request"].state == "failed"
    assert tis["empty_tables"].state == "upstream_failed"
    assert report_of(dag_run) is None
    # The task's log carries the refusal, which says what to type.
    expected = refusal("wrong")
    assert 'trigger again with {"confirm": "clickstream"}' in expected
    assert f"TruncateRefused: {expected}" in capfd.readouterr().out
    assert take_snapshot(settings) == before


@pytest.mark.parametrize(
    "conf",
    [
        pytest.param({"scope": "all", "dry_run": False}, id="conf-without-confirm"),
        pytest.param(None, id="no-conf"),
    ],
)
def test_missing_confirm_is_rejected_by_airflow_before_any_run(before, run_truncate, settings, conf):
    # Airflow 3.3.2 validates the params when dag.test() creates the run: a required param
    # without a default and without a value raises before a DagRun or a task exists.
    runs = truncate_dag_runs()

    with pytest.raises(ParamValidationError, match="Invalid input for param confirm: No value passed"):
        run_truncate(conf)

    assert truncate_dag_runs() == runs
    assert take_snapshot(settings) == before


def test_task_body_refuses_a_missing_confirm_on_its_own(before, settings):
    # empty_tables checks again: nothing is emptied even if check_request were bypassed.
    with pytest.raises(truncate.TruncateRefused) as refused:
        truncate.truncate_warehouse(settings, None, "all", dry_run=False)

    assert str(refused.value) == refusal(None)
    assert take_snapshot(settings) == before


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_reports_every_table_and_its_rows_and_changes_nothing(before, run_truncate, settings):
    dag_run = run_truncate({"confirm": DATABASE, "dry_run": True})

    assert dag_run.state == "success"
    report = report_of(dag_run)
    assert {entry["table"] for entry in report} == SCOPE_TABLES["all"]
    assert report == [
        {"table": table, "rows_before": before.counts[table], "emptied": False}
        for table in truncate.owned_tables(settings, "all")
    ]
    assert take_snapshot(settings) == before


# --- each scope empties exactly its tables -------------------------------------------------


@pytest.mark.parametrize("scope", SCOPES)
def test_scope_empties_exactly_its_tables(before, settings, scope, caplog):
    caplog.set_level(logging.INFO, logger="clickstream.truncate")

    with ClickHouseHook() as hook:
        report = truncate.truncate(hook, settings, scope, dry_run=False)
        counts, objects = row_counts(hook), object_names(hook)

    assert [entry.table for entry in report] == truncate.owned_tables(settings, scope)
    assert {entry.table for entry in report} == SCOPE_TABLES[scope]
    assert all(entry.emptied for entry in report)
    assert {entry.table: entry.rows_before for entry in report} == {
        table: before.counts[table] for table in SCOPE_TABLES[scope]
    }
    assert counts == emptied(before.counts, scope)
    assert objects == before.objects, "tables are emptied, never dropped"
    logged = {record.getMessage() for record in caplog.records}
    for table in SCOPE_TABLES[scope]:
        assert f"Emptied {DATABASE}.{table} ({before.counts[table]} rows before)" in logged


def test_dag_empties_all_spares_other_tables_and_a_second_run_is_a_no_op(before, run_truncate, settings):
    with ClickHouseHook() as hook:
        execute = hook.backend.execute
        execute(
            f"CREATE TABLE {DATABASE}.analyst_notes (id UInt32, note String) ENGINE = MergeTree ORDER BY id",
            {},
        )
        execute(f"INSERT INTO {DATABASE}.analyst_notes VALUES (1, 'keep'), (2, 'me'), (3, 'please')", {})
        execute("CREATE DATABASE sandbox", {})
        execute("CREATE TABLE sandbox.ingest_log (id UInt32) ENGINE = MergeTree ORDER BY id", {})
        execute("INSERT INTO sandbox.ingest_log VALUES (1), (2)", {})

    dag_run = run_truncate({"confirm": DATABASE})  # scope defaults to all

    assert dag_run.state == "success"
    assert report_of(dag_run) == [
        {"table": table, "rows_before": before.counts[table], "emptied": True}
        for table in truncate.owned_tables(settings, "all")
    ]
    with ClickHouseHook() as hook:
        assert row_counts(hook) == {**emptied(before.counts, "all"), "analyst_notes": 3}
        assert row_counts(hook, "sandbox") == {"ingest_log": 2}
        assert object_names(hook) == before.objects | {"analyst_notes"}

    again = run_truncate({"confirm": DATABASE, "scope": "all"})

    assert again.state == "success"
    assert report_of(again) == [
        {"table": table, "rows_before": 0, "emptied": True}
        for table in truncate.owned_tables(settings, "all")
    ]
    with ClickHouseHook() as hook:
        assert row_counts(hook) == {**emptied(before.counts, "all", truncates=2), "analyst_notes": 3}
        assert row_counts(hook, "sandbox") == {"ingest_log": 2}


# --- the warehouse stays consistent ---------------------------------------------------------


def test_after_all_reloading_and_refreshing_gives_the_same_marts_and_raw_data(before, settings):
    with ClickHouseHook() as hook:
        truncate.truncate(hook, settings, "all", dry_run=False)
        assert set(table_checksums(hook, settings).values()) == {"0:0"}

        load_windows(hook, settings)
        result = refresh(hook, settings)
        after = snapshot(hook, settings)

    assert (result.mode, result.loads_applied) == (FULL, len(WINDOWS) * len(settings.tables))
    assert set(after.marts) == set(MARTS)
    assert after.marts == before.marts
    assert after.raw == before.raw
    assert after.counts == {**before.counts, FENCES: fences_written("all")}


def test_after_raw_the_next_refresh_rebuilds_empty_marts_then_a_reload_restores_them(before, settings):
    with ClickHouseHook() as hook:
        truncate.truncate(hook, settings, "raw", dry_run=False)
        assert watermark_is_empty(hook, settings)
        # The fence hides every version at once: the marts equal a rebuild of empty raw tables.
        assert table_checksums(hook, settings) == {mart: "0:0" for mart in MARTS}

        emptied_marts = refresh(hook, settings)
        marts_after_refresh = table_checksums(hook, settings)
        counts_after_refresh = row_counts(hook)

        load_windows(hook, settings)
        reloaded = refresh(hook, settings)
        after = snapshot(hook, settings)

    assert (emptied_marts.mode, emptied_marts.loads_applied) == (FULL, 0)
    assert marts_after_refresh == {mart: "0:0" for mart in MARTS}
    # Raw tables and watermark stay empty. The marts' storage still holds the old rows, hidden
    # by the empty rebuild's commit; the next refresh deletes them (create_marts.sql).
    assert {name: counts_after_refresh[name] for name in RAW_TABLES} == dict.fromkeys(RAW_TABLES, 0)
    assert reloaded.mode == FULL
    assert after.marts == before.marts
    assert after.raw == before.raw


def test_after_marts_the_next_refresh_rebuilds_them_from_the_raw_tables(before, settings):
    with ClickHouseHook() as hook:
        truncate.truncate(hook, settings, "marts", dry_run=False)
        assert set(table_checksums(hook, settings).values()) == {"0:0"}
        assert raw_checksums(hook, settings) == before.raw

        result = refresh(hook, settings)
        after = snapshot(hook, settings)

    assert (result.mode, result.loads_applied) == (FULL, len(WINDOWS) * len(settings.tables))
    assert after == replace(before, counts={**before.counts, FENCES: fences_written("marts")})
