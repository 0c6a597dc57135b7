"""Superset's "Purchases" dashboard on the embedded stack: `make dashboards`, `make dashboards-check`.

The embedded warehouse (chdb) lets one process open its data, and the DAGs write it; so
Superset reads the snapshot the warehouse publishes after every refresh and truncate
(``marts.publish_snapshot``, the connection's ``marts_snapshot_dir``), through a chdb
directory of its own where ``marts.attach_snapshot`` puts the five marts under their usual
names. Every query reads the newest snapshot: the dashboards are at most one refresh behind.

This script

1. installs Superset in a virtualenv of its own (.local/dashboards/venv, from
   deploy/superset/requirements.txt: its pins clash with Airflow's);
2. prepares Superset's home under .local/dashboards: SQLite metadata, a secret key and an
   admin password generated once (files readable by their owner only);
3. runs the demo first if no snapshot exists yet, attaches the snapshot, imports the bundle
   (deploy/superset/import_dashboards.py, the same as the compose service runs) and starts
   Superset on loopback;
4. ``serve`` (make dashboards): prints the URL and the login, and runs until Ctrl-C or
   SIGTERM; ``check`` (make dashboards-check): opens the dashboard in headless Chromium and
   checks every chart's numbers through Superset's chart-data API against the marts, then
   stops, and prints ``charts_rendered=<n>/<m>`` and ``charts_equal_marts=<n>/<m>`` last.

Everything it starts is stopped by process group on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import local_stack

HOME = local_stack.PROJECT_ROOT / ".local" / "dashboards"
DEMO_SNAPSHOTS = local_stack.PROJECT_ROOT / ".local" / "demo" / local_stack.MARTS_SNAPSHOTS
REQUIREMENTS = local_stack.PROJECT_ROOT / "deploy" / "superset" / "requirements.txt"
CONFIG = local_stack.PROJECT_ROOT / "deploy" / "superset" / "superset_config.py"
IMPORTER = local_stack.PROJECT_ROOT / "deploy" / "superset" / "import_dashboards.py"
BROWSER_CHECK = local_stack.PROJECT_ROOT / "scripts" / "dashboards_browser.py"
ADMIN = "admin"
DASHBOARD_SLUG = "purchases"
TIME_RANGE_FILTER = "NATIVE_FILTER-time-range"


def ensure_virtualenv(home: Path) -> Path:
    """Install Superset into ``home``/venv unless the pinned set is there already; return its bin/."""
    venv = home / "venv"
    stamp = venv / ".installed"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin"
    print(f"dashboards: installing Superset into {venv} (a few minutes, once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # Every version is pinned, dependencies included: nothing is left to the resolver.
    subprocess.run([*pip, "--no-deps", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return venv / "bin"


def _secret(path: Path) -> str:
    """The secret kept in ``path``, generated on first use and readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def attach(snapshots: Path, reader: Path) -> None:
    """Give Superset's own chdb directory ``reader`` the marts of the snapshots in ``snapshots``."""
    code = (
        "import sys; from pathlib import Path\n"
        "from clickstream.config import get_settings\n"
        "from clickstream.marts import attach_snapshot\n"
        "from clickstream.warehouse import ClickHouseHook\n"
        "with ClickHouseHook() as hook:\n"
        "    attach_snapshot(hook, get_settings(), Path(sys.argv[1]))\n"
    )
    # A process of its own: chdb keeps a data directory open for as long as its process lives.
    env = {**os.environ, "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": local_stack.chdb_connection_uri(reader)}
    env["PYTHONPATH"] = str(local_stack.PROJECT_ROOT / "plugins")
    completed = subprocess.run(
        [sys.executable, "-c", code, str(snapshots)], env=env, capture_output=True, text=True
    )
    if completed.returncode:
        raise RuntimeError(
            f"could not attach the marts published in {snapshots}:\n{completed.stderr[-3000:]}"
        )


@dataclass
class Superset:
    """Superset on loopback over the marts published to ``snapshots``; state under ``home``."""

    home: Path
    snapshots: Path
    port: int
    log: Path

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = _secret(self.home / "admin-password")
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        reader = self.home / "reader"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))},
            "SUPERSET_CONFIG_PATH": str(CONFIG),
            "SUPERSET_HOME": str(self.home / "superset"),
            "SUPERSET_SECRET_KEY": _secret(self.home / "secret-key"),
            "SUPERSET_METADATA_URI": f"sqlite:///{self.home / 'superset' / 'superset.db'}",
            "CLICKSTREAM_DASHBOARDS_DATABASE_URI": f"clickhousedb://localhost/clickstream?interface=chdb&path={reader}",
            "FLASK_APP": "superset",
        }

    def _run(self, *command: str) -> None:
        with self.log.open("ab") as sink:
            subprocess.run(command, env=self.environment(), check=True, stdout=sink, stderr=subprocess.STDOUT)

    def prepare(self, bin_dir: Path) -> None:
        """Migrate the metadata, create the admin, attach the newest snapshot and import the bundle."""
        (self.home / "superset").mkdir(parents=True, exist_ok=True)
        self.bin = bin_dir
        superset = str(bin_dir / "superset")
        self._run(superset, "db", "upgrade")
        with contextlib.suppress(subprocess.CalledProcessError):  # it exists from an earlier start
            self._run(superset, "fab", "create-admin", "--username", ADMIN, "--firstname", "Clickstream",
                      "--lastname", "Admin", "--email", "admin@localhost", "--password", self.password)  # fmt: skip
        self._run(superset, "fab", "reset-password", "--username", ADMIN, "--password", self.password)
        self._run(superset, "init")
        attach(self.snapshots, self.home / "reader")
        self._run(str(bin_dir / "python"), str(IMPORTER))

    def start(self, timeout: float = 180.0) -> None:
        """Start Superset (gunicorn, one worker: one process may open the reader's chdb) and wait for it."""
        sink = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(self.bin / "gunicorn"), "--workers", "1", "--threads", "8", "--timeout", "300",
             "--bind", f"127.0.0.1:{self.port}", "superset.app:create_app()"],
            env=self.environment(), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Superset exited with code {self.process.returncode}; see {self.log}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/health", timeout=5) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(1)
        raise RuntimeError(f"Superset did not answer within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            local_stack.stop_group(self.process, timeout=30)
            self.process = None


@contextlib.contextmanager
def running_superset(home: Path, snapshots: Path, port: int) -> Iterator[Superset]:
    """Superset prepared and started, stopped (by process group) when the block ends.

    Its state lives under ``home``; the virtualenv is always the one under ``HOME``.
    """
    home.mkdir(parents=True, exist_ok=True)
    superset = Superset(home, snapshots, port, home / "superset.log")
    superset.prepare(ensure_virtualenv(HOME))
    try:
        superset.start()
        yield superset
    finally:
        superset.stop()


class SupersetAPI:
    """Superset's REST API as the admin."""

    def __init__(self, superset: Superset):
        import requests

        self.base = superset.url
        self.session = requests.Session()
        login = {"username": ADMIN, "password": superset.password, "provider": "db", "refresh": True}
        token = self._checked(self.session.post(f"{self.base}/api/v1/security/login", json=login))[
            "access_token"
        ]
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["X-CSRFToken"] = self.get("/api/v1/security/csrf_token/")["result"]
        self.session.headers["Referer"] = self.base

    @staticmethod
    def _checked(response) -> dict:
        if response.status_code >= 300:
            raise RuntimeError(
                f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}"
            )
        return response.json()

    def get(self, path: str) -> dict:
        return self._checked(self.session.get(f"{self.base}{path}"))

    def post(self, path: str, payload: dict) -> dict:
        return self._checked(self.session.post(f"{self.base}{path}", json=payload))

    def dashboard(self, slug: str = DASHBOARD_SLUG) -> dict:
        return self.get(f"/api/v1/dashboard/{slug}")["result"]

    def charts(self, slug: str = DASHBOARD_SLUG) -> list[dict]:
        return self.get(f"/api/v1/dashboard/{slug}/charts")["result"]

    def default_time_range(self, slug: str = DASHBOARD_SLUG) -> str:
        metadata = json.loads(self.dashboard(slug)["json_metadata"])
        [time_filter] = [f for f in metadata["native_filter_configuration"] if f["id"] == TIME_RANGE_FILTER]
        return time_filter["defaultDataMask"]["extraFormData"]["time_range"]

    def chart_data(self, chart_id: int, time_range: str) -> list[dict]:
        """The rows of a chart's own saved query, for ``time_range`` as the dashboard filter sets it."""
        query_context = json.loads(self.get(f"/api/v1/chart/{chart_id}")["result"]["query_context"])
        for query in query_context["queries"]:
            for condition in query["filters"]:
                if condition["op"] == "TEMPORAL_RANGE":
                    condition["val"] = time_range
        return self.post("/api/v1/chart/data", query_context)["result"][0]["data"]


# What each chart of the bundle must show, straight from the marts: the query, the columns
# that key a row, the measures in the query's order, and whether it shows only the top 10.
@dataclass(frozen=True)
class ChartExpectation:
    sql: str
    keys: tuple[str, ...]
    measures: tuple[str, ...]  # what the chart shows, each of them
    top: int | None = None
    beside: tuple[str, ...] = ()  # what the query adds that the chart must not show


EXPECTATIONS = {
    "Purchases per hour by browser and device": ChartExpectation(
        "dashboards_expected_purchases_per_hour", ("hour", "browser_name", "device_type"), ("purchases",)
    ),
    "Purchases and buyers by source, medium and campaign": ChartExpectation(
        "dashboards_expected_purchases_by_campaign",
        ("utm_source", "utm_medium", "utm_campaign"),
        ("purchases", "buyers"),
        beside=("sum_of_hourly_buyers",),
    ),
    "Events and users by source": ChartExpectation(
        "dashboards_expected_users_by_source", ("utm_source",), ("events", "users")
    ),
    "Top 10 regions by purchases": ChartExpectation(
        "dashboards_expected_regions", ("geo_country", "geo_region_name"), ("purchases", "buyers"), top=10
    ),
    "Top 10 pages leading to a purchase": ChartExpectation(
        "dashboards_expected_leading_pages", ("page_url",), ("purchases",), top=10
    ),
}


def parse_time_range(time_range: str) -> tuple[datetime, datetime]:
    start, end = (datetime.fromisoformat(part.strip()) for part in time_range.split(" : "))
    return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)


def expected_rows(hook, settings, expectation: ChartExpectation, start: datetime, end: datetime) -> dict:
    """{key: {measure: value}} of a chart for [start, end), from the marts of ``hook``'s warehouse."""
    params = {
        "database": settings.warehouse.database,
        "purchase_path": settings.marts.purchase_page_path,
        "from_hour": start.strftime("%Y-%m-%d %H:%M:%S"),
        "to_hour": end.strftime("%Y-%m-%d %H:%M:%S"),
    }
    rows = hook.run(expectation.sql, params, sql_dir=local_stack.SCRIPTS_SQL_DIR)
    width = len(expectation.keys)
    return {
        tuple(row[:width]): {
            name: int(value)
            for name, value in zip((*expectation.measures, *expectation.beside), row[width:], strict=True)
        }
        for row in rows
    }


def shown_rows(expectation: ChartExpectation, data: list[dict]) -> dict:
    """{key: {measure: value}} of what Superset answered for a chart."""
    shown = {}
    for row in data:
        key = tuple(
            datetime.fromtimestamp(row[name] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if name == "hour"
            else row[name]
            for name in expectation.keys
        )
        # A measure the chart does not answer with is a KeyError: the check fails, not passes.
        shown[key] = {name: int(row[name]) for name in expectation.measures}
    return shown


def chart_equals_marts(expectation: ChartExpectation, shown: dict, expected: dict) -> bool:
    """Whether a chart shows the marts' numbers: every row, or for a top-10 chart the 10 largest."""
    comparable = {key: {m: values[m] for m in expectation.measures} for key, values in expected.items()}
    if expectation.top is None:
        return shown == comparable
    rank = expectation.measures[0]
    largest = sorted((values[rank] for values in expected.values()), reverse=True)[: expectation.top]
    return (
        len(shown) == min(expectation.top, len(expected))
        and sorted((values[rank] for values in shown.values()), reverse=True) == largest
        and all(comparable.get(key) == values for key, values in shown.items())
    )


def compare_charts(api: SupersetAPI, warehouse_conn: str, time_range: str) -> dict[str, dict]:
    """For each chart of the dashboard: what it shows and what the marts hold, for ``time_range``."""
    from clickstream.config import get_settings
    from clickstream.warehouse import ClickHouseHook

    os.environ["AIRFLOW_CONN_CLICKSTREAM_MARTS"] = warehouse_conn
    start, end = parse_time_range(time_range)
    report = {}
    with ClickHouseHook("clickstream_marts") as hook:
        for chart in api.charts():
            name = chart["slice_name"]
            expectation = EXPECTATIONS[name]
            shown = shown_rows(expectation, api.chart_data(chart["id"], time_range))
            expected = expected_rows(hook, get_settings(), expectation, start, end)
            report[name] = {
                "shown": shown,
                "expected": expected,
                "equal": chart_equals_marts(expectation, shown, expected),
            }
    return report


def render(superset: Superset, screenshot: Path) -> dict:
    """Open the dashboard in headless Chromium (scripts/dashboards_browser.py, in Superset's virtualenv)."""
    completed = subprocess.run(
        [str(superset.bin / "python"), str(BROWSER_CHECK), "--url", superset.url, "--dashboard", DASHBOARD_SLUG,
         "--username", ADMIN, "--password", superset.password, "--screenshot", str(screenshot)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(completed.stdout.strip().splitlines()[-1])


def check(superset: Superset, warehouse: Path) -> tuple[dict, dict]:
    """Render the dashboard and compare every chart with the marts of the ``warehouse`` chdb."""
    rendered = render(superset, superset.home / "purchases.png")
    api = SupersetAPI(superset)
    compared = compare_charts(api, local_stack.chdb_connection_uri(warehouse), api.default_time_range())
    return rendered, compared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("mode", choices=("serve", "check"), help="serve until stopped, or check and stop")
    parser.add_argument(
        "--home", type=Path, default=HOME, help="state folder (Superset's virtualenv, metadata, screenshots)"
    )
    parser.add_argument("--port", type=int, default=8088, help="Superset's port on 127.0.0.1")
    parser.add_argument(
        "--demo-home",
        type=Path,
        default=DEMO_SNAPSHOTS.parent,
        help="the demo's state folder, whose marts are shown",
    )
    args = parser.parse_args()
    snapshots = args.demo_home / local_stack.MARTS_SNAPSHOTS
    with local_stack.interrupted_by_signals():
        try:
            if not (snapshots / "current").exists():
                if args.demo_home.resolve() != DEMO_SNAPSHOTS.parent.resolve():
                    sys.exit(
                        f"dashboards: no marts published under {snapshots} yet: wait for the first marts run"
                    )
                print("dashboards: no marts published yet; running the demo first", flush=True)
                subprocess.run([sys.executable, str(local_stack.PROJECT_ROOT / "scripts" / "demo.py"), "--home",
                                str(args.demo_home)], check=True)  # fmt: skip
            with running_superset(args.home, snapshots, args.port) as superset:
                if args.mode == "serve":
                    print(
                        f"dashboards: Superset at {superset.url}/superset/dashboard/{DASHBOARD_SLUG}/",
                        flush=True,
                    )
                    print(
                        f"dashboards: log in as {ADMIN} / {superset.password} (kept in {args.home / 'admin-password'})"
                    )
                    print("dashboards: Ctrl-C stops it", flush=True)
                    while superset.process.poll() is None:
                        time.sleep(1)
                    sys.exit(
                        f"dashboards: Superset exited with code {superset.process.returncode}; see {superset.log}"
                    )
                rendered, compared = check(superset, args.demo_home / "chdb")
        except KeyboardInterrupt:
            print("dashboards: stopped", flush=True)
            return
    for name, result in compared.items():
        print(f"  {'equal' if result['equal'] else 'DIFFERENT':9}  {name}")
    for problem in rendered["errors"]:
        print(f"  not rendered: {problem}")
    print(f"screenshot: {rendered['screenshot']}")
    print(f"charts_rendered={rendered['rendered']}/{rendered['total']}")
    print(f"charts_equal_marts={sum(r['equal'] for r in compared.values())}/{len(compared)}")


if __name__ == "__main__":
    os.chdir(local_stack.PROJECT_ROOT)
    main()
