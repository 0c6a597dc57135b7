"""The "Purchases" dashboard: the bundle as code, and Superset showing the marts in a browser.

The bundle tests read include/dashboards as Superset would import it. The end-to-end test
loads generated hours through the loader on moto_server and chdb, refreshes the marts
(which publishes their snapshot), starts Superset on loopback over that snapshot exactly as
`make dashboards` does (scripts/dashboards.py: its own virtualenv, SQLite metadata, the
bundle imported by deploy/superset/import_dashboards.py), imports the bundle a second time,
opens the dashboard in headless Chromium (Debian's chromium and chromium-driver) and checks
every chart's numbers through Superset's chart-data API against the marts. Everything it
starts is stopped by process group at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dashboards
import local_stack
import pytest
import yaml
from synthetic_clickstream import upload_hours
from test_marts import Click, Event, put_window

from clickstream.config import PROJECT_ROOT, get_settings
from clickstream.loading import WindowLoader, ensure_schema
from clickstream.marts import MARTS, refresh_warehouse
from clickstream.source import SourceBucket
from clickstream.warehouse import ClickHouseHook

BUNDLE = PROJECT_ROOT / "include" / "dashboards" / "purchases"
START = datetime(2024, 4, 10, 23, tzinfo=UTC)
HOURS = 3
# A buyer who comes back through the same campaign an hour later, in two more windows: the
# campaign's distinct buyers over the range are then fewer than the sum of its hours'.
RETURNING = Click("R", "Chrome", "Mobile", "Spain", "Madrid", ("google", "cpc", "campaign_1"))


def bundle(kind: str) -> dict[str, dict]:
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted((BUNDLE / kind).rglob("*.yaml"))}


def test_the_bundle_holds_no_uri_host_password_or_path():
    text = "\n".join(path.read_text() for path in BUNDLE.rglob("*.yaml"))
    [database] = bundle("databases").values()
    assert database["sqlalchemy_uri"] == "from the environment: CLICKSTREAM_DASHBOARDS_DATABASE_URI"
    for leak in ("://", "password", "/tmp", "/work", "/home", "localhost", "127.0.0.1"):
        assert leak not in text.replace("http://www.dummywebsite.com", ""), leak


def test_the_datasets_are_the_five_marts_and_distinct_counts_merge_their_states():
    datasets = bundle("datasets")
    assert {d["table_name"] for d in datasets.values()} == set(MARTS)
    for dataset in datasets.values():
        assert dataset["main_dttm_col"] == "hour"
        for metric in dataset["metrics"]:
            if metric["metric_name"] in ("buyers", "users"):
                # Exact over any range: the hours' uniqExact states merged, never their counts added.
                assert metric["expression"] == f"uniqExactMerge({metric['metric_name']})"
    [purchases] = [m for m in datasets["mart_hourly_events"]["metrics"] if m["metric_name"] == "purchases"]
    assert (
        purchases["expression"]
        == f"sumIf(events, page_url_path = '{get_settings().marts.purchase_page_path}')"
    )


def test_one_time_range_filter_reaches_every_chart_and_every_chart_is_checked():
    charts = bundle("charts")
    [dashboard] = bundle("dashboards").values()
    placed = {v["meta"]["uuid"] for k, v in dashboard["position"].items() if k.startswith("CHART-")}
    assert placed == {chart["uuid"] for chart in charts.values()}
    [time_filter] = dashboard["metadata"]["native_filter_configuration"]
    assert (time_filter["filterType"], time_filter["scope"]) == (
        "filter_time",
        {"rootPath": ["ROOT_ID"], "excluded": []},
    )
    assert {chart["slice_name"] for chart in charts.values()} == set(dashboards.EXPECTATIONS)
    for chart in charts.values():
        assert {"subject": "hour", "operator": "TEMPORAL_RANGE"}.items() <= chart["params"]["adhoc_filters"][
            0
        ].items()


@pytest.fixture
def published_marts(
    tmp_path, chdb_path, s3_client, bucket, s3_connection, project_config, monkeypatch
) -> Path:
    """Generated hours loaded and refreshed on a warehouse that publishes its marts; the snapshot folder."""
    project_config(source__bucket=f'"{bucket}"')
    settings = get_settings()
    snapshots = tmp_path / "snapshots"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLICKHOUSE_DEFAULT", local_stack.chdb_connection_uri(chdb_path, snapshots)
    )
    upload_hours(s3_client, bucket, START, HOURS, events_per_hour=600, seed=19)
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, SourceBucket(s3_connection, bucket), settings)
        for offset in range(HOURS):
            for table in settings.tables:
                loader.load(table, START + timedelta(hours=offset))
        for offset in (HOURS, HOURS + 1):
            window = START + timedelta(hours=offset)
            stamp = f"{window + timedelta(minutes=10):%Y-%m-%d %H:%M:%S}.000000"
            put_window(s3_client, bucket, window, [Event(f"R{offset}", RETURNING, stamp, "/confirmation")])
            for table in settings.tables:
                loader.load(table, window)
    refresh_warehouse(settings)
    return snapshots


def test_superset_shows_the_marts_in_a_browser_and_every_chart_equals_them(
    tmp_path, chdb_path, published_marts
):
    home = tmp_path / "dashboards"
    with dashboards.running_superset(home, published_marts, local_stack.free_port()) as superset:
        # Imported at start; a second import replaces, it does not add.
        superset._run(str(superset.bin / "python"), str(dashboards.IMPORTER))
        api = dashboards.SupersetAPI(superset)
        assert [d["dashboard_title"] for d in api.get("/api/v1/dashboard/")["result"]] == ["Purchases"]
        assert api.get("/api/v1/chart/")["count"] == 5
        assert api.get("/api/v1/dataset/")["count"] == 5
        assert api.get("/api/v1/database/")["count"] == 1
        # The filter defaults to the 7 days of data up to the newest hour of the marts.
        end = START + timedelta(hours=HOURS + 2)
        assert (
            api.default_time_range()
            == f"{(end - timedelta(days=7)):%Y-%m-%dT%H:%M:%S} : {end:%Y-%m-%dT%H:%M:%S}"
        )

        rendered, compared = dashboards.check(superset, chdb_path)

    assert (rendered["rendered"], rendered["total"]) == (5, 5), rendered["errors"]
    assert Path(rendered["screenshot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {name: result["equal"] for name, result in compared.items()} == dict.fromkeys(
        dashboards.EXPECTATIONS, True
    )
    # Over the whole range a buyer who came back in another hour counts once: the chart's
    # figure (equal to the merged states) is below the sum of its hours.
    by_campaign = compared["Purchases and buyers by source, medium and campaign"]
    returning = by_campaign["expected"][RETURNING.utm]
    assert returning["buyers"] < returning["sum_of_hourly_buyers"], returning
    assert all(
        by_campaign["shown"][key]["buyers"] == values["buyers"]
        for key, values in by_campaign["expected"].items()
    )
