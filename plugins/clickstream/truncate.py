"""Emptying the warehouse on an operator's request, limited to the tables the product owns.

The tables come from the project's own SQL: every ``CREATE TABLE IF NOT EXISTS`` of a
``create_*.sql`` file. Nothing else in the database is ever touched, and tables are
emptied, never dropped, so the DAGs keep working right after.

A truncate may come while refreshes and loads run; the warehouse keeps them apart, whoever
started them. Every scope resets the marts, so it writes a fence above every running
refresh's version before it empties anything, and again after (for a refresh that started
in between). What a fenced refresh writes stays invisible and leaves the watermark empty:
the next refresh rebuilds the marts in full from what is left. A truncate of the raw layer
also writes a raw fence before it empties anything and again right before it empties
``ingest_log``: a load commits only if no raw fence came since it began, and only while its
staged rows are all there (``insert_ingest_log_commit.sql``), so no window is left final
without its rows.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass

from clickstream import marts
from clickstream.config import SQL_DIR, Settings
from clickstream.marts import ensure_marts_schema
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

SCOPES = ("all", "raw", "marts")
_CREATED_TABLE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
MARTS_WATERMARK = "marts_applied_loads"
INGEST_LOG = "ingest_log"


class TruncateRefused(ValueError):
    """The run's parameters do not allow emptying anything."""


@dataclass(frozen=True)
class EmptiedTable:
    table: str
    rows_before: int
    emptied: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_request(confirm: str | None, scope: str, database: str) -> None:
    """Refuse unless ``confirm`` is the database name and ``scope`` is known.

    :raises TruncateRefused: with a message that says what to type.
    """
    if scope not in SCOPES:
        raise TruncateRefused(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if confirm != database:
        raise TruncateRefused(
            f"confirm is {confirm!r}: to empty the {scope!r} tables of database {database!r}, "
            f'trigger again with {{"confirm": "{database}"}}'
        )


def _tables_created_by(sql_file_stem: str) -> list[str]:
    return _CREATED_TABLE.findall((SQL_DIR / f"{sql_file_stem}.sql").read_text())


def owned_tables(settings: Settings, scope: str) -> list[str]:
    """Return the tables ``scope`` empties, in the order they are emptied.

    ``raw`` also resets the marts' watermark so that the next refresh rebuilds the marts
    from what is loaded again; ``marts`` empties the marts and the watermark, so the next
    refresh rebuilds them from the raw tables.
    """
    raw = [name for source in settings.tables for name in _tables_created_by(f"create_{source.name}")]
    # ingest_log after the staged rows: a load's commit needs them (see the module's docstring).
    raw += _tables_created_by("create_ingest_log")
    marts = [
        name for path in sorted(SQL_DIR.glob("create_mart*.sql")) for name in _tables_created_by(path.stem)
    ]
    watermark_first = sorted(marts, key=lambda name: name != MARTS_WATERMARK)
    if scope == "raw":
        return [MARTS_WATERMARK, *raw]
    if scope == "marts":
        return watermark_first
    return [*watermark_first, *raw]


def truncate(hook: ClickHouseHook, settings: Settings, scope: str, dry_run: bool) -> list[EmptiedTable]:
    """Empty the ``scope`` tables that exist, logging each with its row count before.

    :param dry_run: only report the rows each table would lose.
    """
    database = settings.warehouse.database
    tables = owned_tables(settings, scope)
    existing = {
        name
        for (name,) in hook.run(
            "select_existing_tables", {"database": database, "tables": json.dumps(tables)}
        )
    }
    empties_raw = INGEST_LOG in tables
    if not dry_run:
        ensure_marts_schema(hook, settings)
        _fence(hook, settings, "marts")
        if empties_raw:
            _fence(hook, settings, "raw")
    report = []
    for table in tables:
        if table == INGEST_LOG and not dry_run:
            # Loads that staged before their rows were emptied may not commit from here on.
            _fence(hook, settings, "raw")
        if table not in existing:
            log.info("%s.%s does not exist; nothing to empty", database, table)
            continue
        [[rows]] = hook.run("select_row_count", {"database": database, "table": table})
        rows = int(rows)
        if dry_run:
            log.info("Dry run: would empty %s.%s (%d rows)", database, table, rows)
        else:
            hook.run("truncate_table", {"database": database, "table": table})
            log.info("Emptied %s.%s (%d rows before)", database, table, rows)
        report.append(EmptiedTable(table=table, rows_before=rows, emptied=not dry_run))
    if not dry_run:
        _fence(hook, settings, "marts")
    return report


def _fence(hook: ClickHouseHook, settings: Settings, scope: str) -> None:
    hook.run("insert_truncation_fence", {"database": settings.warehouse.database, "scope": scope})


def truncate_warehouse(settings: Settings, confirm: str | None, scope: str, dry_run: bool) -> list[dict]:
    """Check the request, then empty the ``scope`` tables of the configured warehouse."""
    check_request(confirm, scope, settings.warehouse.database)
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        emptied = [entry.to_dict() for entry in truncate(hook, settings, scope, dry_run)]
        if not dry_run:
            marts.publish_snapshot(hook, settings)
        return emptied
