"""Import the clickstream dashboards into Superset, as often as you like: one copy stays.

Runs with Superset's own Python (the compose service's entrypoint, or the local stack's
dashboards virtualenv). The bundle in include/dashboards/purchases is Superset's export
format with no URI, host or password inside; this fills in

- the database's SQLAlchemy URI, from CLICKSTREAM_DASHBOARDS_DATABASE_URI (a read-only
  ClickHouse user over clickhouse-connect in production, see the README);
- the dashboard's time-range filter default: the last 7 days of data in the marts at the
  time of the import (the hours up to the newest one), or "Last week" while they are empty;

then imports it with `superset import-dashboards`, which replaces the objects with the same
UUIDs instead of adding copies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import sqlalchemy
import yaml

URI_VARIABLE = "CLICKSTREAM_DASHBOARDS_DATABASE_URI"
BUNDLE = Path(__file__).resolve().parents[2] / "include" / "dashboards" / "purchases"
DATABASE_FILE = Path("databases") / "clickstream.yaml"
DASHBOARD_FILE = Path("dashboards") / "purchases.yaml"
TIME_RANGE_FILTER = "NATIVE_FILTER-time-range"


def last_week_of_data(uri: str) -> str:
    """Return a Superset time range over the 7 days of marts up to their newest hour."""
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as connection:
            newest = connection.execute(
                sqlalchemy.text("SELECT max(hour), count() FROM mart_hourly_events")
            ).one()
    finally:
        engine.dispose()
    if not newest[1]:
        return "Last week"
    end = newest[0].replace(tzinfo=None) + timedelta(hours=1)
    return f"{(end - timedelta(days=7)).isoformat()} : {end.isoformat()}"


def filled_bundle(bundle: Path, uri: str, time_range: str, target: Path) -> Path:
    """Write ``bundle`` as an import zip at ``target``, with the URI and the default range filled in."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(bundle.rglob("*.yaml")):
            relative = path.relative_to(bundle)
            document = yaml.safe_load(path.read_text())
            if relative == DATABASE_FILE:
                document["sqlalchemy_uri"] = uri
            if relative == DASHBOARD_FILE:
                for native_filter in document["metadata"]["native_filter_configuration"]:
                    if native_filter["id"] == TIME_RANGE_FILTER:
                        native_filter["defaultDataMask"]["extraFormData"]["time_range"] = time_range
                        native_filter["defaultDataMask"]["filterState"]["value"] = time_range
            archive.writestr(str(Path("purchases") / relative), yaml.safe_dump(document, sort_keys=False))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=BUNDLE, help="the bundle folder (default: %(default)s)"
    )
    parser.add_argument(
        "--username", default="admin", help="Superset user the import runs as (default: %(default)s)"
    )
    args = parser.parse_args()
    uri = os.environ.get(URI_VARIABLE)
    if not uri:
        sys.exit(f"import_dashboards: set {URI_VARIABLE} to the SQLAlchemy URI of the marts' ClickHouse")
    time_range = last_week_of_data(uri)
    with tempfile.TemporaryDirectory() as scratch:
        archive = filled_bundle(args.bundle, uri, time_range, Path(scratch) / "purchases.zip")
        superset = Path(sys.executable).with_name("superset")
        command = [str(superset) if superset.exists() else "superset", "import-dashboards"]
        subprocess.run([*command, "--path", str(archive), "--username", args.username], check=True)
    print(f"import_dashboards: imported {args.bundle.name}, default time range {time_range}", flush=True)


if __name__ == "__main__":
    main()
