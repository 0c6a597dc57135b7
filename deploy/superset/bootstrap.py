"""First step of the compose stack's superset-init: what Superset needs before it starts.

Idempotent, so it runs on every start:

- the metadata database `superset` and its owner role in the stack's Postgres (a database of
  its own beside Airflow's), with SUPERSET_DB_PASSWORD;
- the read-only ClickHouse user the dashboards log in as (CLICKHOUSE_DASHBOARDS_USER,
  CLICKHOUSE_DASHBOARDS_PASSWORD): SELECT on the marts' database and nothing else, created
  by the bundle's ClickHouse user (the clickhouse service grants it access management).
"""

from __future__ import annotations

import os
import re

import clickhouse_connect
import psycopg2
from psycopg2 import sql


def create_metadata_database() -> None:
    password = os.environ["SUPERSET_DB_PASSWORD"]
    connection = psycopg2.connect(
        host="postgres", dbname="airflow", user="airflow", password=os.environ["POSTGRES_PASSWORD"]
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = 'superset'")
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE superset LOGIN PASSWORD {}").format(sql.Literal(password)))
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'superset'")
        if not cursor.fetchone():
            cursor.execute("CREATE DATABASE superset OWNER superset")
    connection.close()


def create_dashboards_user() -> None:
    client = clickhouse_connect.get_client(
        host="clickhouse", username=os.environ["CLICKHOUSE_USER"], password=os.environ["CLICKHOUSE_PASSWORD"]
    )
    user, database = os.environ["CLICKHOUSE_DASHBOARDS_USER"], os.environ["CLICKHOUSE_DB"]
    parameters = {
        "user": user,
        "password": os.environ["CLICKHOUSE_DASHBOARDS_PASSWORD"],
        "database": database,
    }
    # readonly = 2: no writes and no DDL, but the per-query settings clickhouse-connect sends.
    client.command(
        "CREATE USER IF NOT EXISTS {user:Identifier} IDENTIFIED WITH sha256_password BY {password:String} "
        "SETTINGS readonly = 2",
        parameters=parameters,
    )
    client.command(
        "ALTER USER {user:Identifier} IDENTIFIED WITH sha256_password BY {password:String}",
        parameters=parameters,
    )
    # GRANT takes no query parameters: the two names are checked, then quoted.
    for name in (user, database):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SystemExit(
                f"superset-init: {name!r} is no plain ClickHouse identifier (letters, digits, _)"
            )
    client.command(f"GRANT SELECT ON `{database}`.* TO `{user}`")
    client.close()


if __name__ == "__main__":
    create_metadata_database()
    create_dashboards_user()
    print("superset-init: metadata database and read-only ClickHouse user ready", flush=True)
