"""Catching up with history in bulk: every window older than the lateness horizon.

The live DAG loads the newest hour only. Everything older, the first start's ~22,900 hours
from ``start_date`` as much as the hours a stopped scheduler missed, is this module's job:
the ingest log says which windows have no final row yet (``select_unresolved_windows.sql``),
and one task resolves as many of them as it can in ``catchup.batch_seconds``, newest first,
listing each day's prefix once. Every window is still committed on its own, table by table,
exactly as a live load commits it; only the task around the loads is shared.

Before a batch, the bucket is re-checked over the last ``source.recheck_days``
(``recheck.py``): late and changed objects become unresolved windows of that batch.

The batch then hands the warehouse pool back, so the live hour and the marts (higher
priority weights) run before the next batch starts.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from clickstream import alerts, clock
from clickstream.config import Settings, SourceTable
from clickstream.loading import (
    WINDOW,
    WindowLoader,
    ensure_schema,
    load_windows,
    parse_window_start,
    source_bucket,
    sweep_orphaned_loads,
)
from clickstream.recheck import recheck_bucket
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

_SECOND = "%Y-%m-%d %H:%M:%S"


def history_end(settings: Settings, now: datetime) -> datetime:
    """Return the end of the history the catch-up owns: windows ending a lateness horizon ago.

    Newer windows are the live DAG's: their objects may still be on their way.
    """
    horizon_passed = (now - settings.source.lateness_horizon).replace(minute=0, second=0, microsecond=0)
    return max(settings.start_date, horizon_passed)


def unresolved_windows(
    hook: ClickHouseHook, settings: Settings, window_from: datetime, window_to: datetime
) -> list[tuple[datetime, tuple[SourceTable, ...]]]:
    """Return the windows in ``[window_from, window_to)`` with tables lacking a final row, newest first.

    A table whose window failed is left out until its retry delay has passed (see
    ``catchup.failed_window_retry_seconds``).
    """
    rows = hook.run(
        "select_unresolved_windows",
        {
            "database": settings.warehouse.database,
            "window_from": window_from.strftime(_SECOND),
            "window_to": window_to.strftime(_SECOND),
            "tables": json.dumps(list(settings.table_names)),
            "retry_seconds": settings.catchup.failed_window_retry_seconds,
            "max_retry_seconds": settings.catchup.failed_window_max_retry_seconds,
            "now": clock.warehouse_now(hook),
        },
    )
    order = {name: position for position, name in enumerate(settings.table_names)}
    return [
        (
            parse_window_start(window_start),
            tuple(settings.table(name) for name in sorted(names, key=order.__getitem__)),
        )
        for window_start, names in rows
    ]


def every_window(
    settings: Settings, window_from: datetime, window_to: datetime
) -> list[tuple[datetime, tuple[SourceTable, ...]]]:
    """Return every window of ``[window_from, window_to)`` with all tables, newest first."""
    count = int((window_to - window_from) / WINDOW)
    return [(window_from + WINDOW * offset, settings.tables) for offset in reversed(range(count))]


class ReloadRangeError(ValueError):
    """A manual reload range that cannot mean what the operator wanted: retrying will not help."""


def parse_reload_range(reload_from: str | None, reload_to: str | None) -> tuple[datetime, datetime] | None:
    """Return the manual reload range ``[reload_from, reload_to)``, or None when none is given.

    :raises ReloadRangeError: only one end given, or the range is empty or backwards (a run
        that loads nothing would look like a green reload).
    """
    if not (reload_from or reload_to):
        return None
    if not (reload_from and reload_to):
        raise ReloadRangeError("give both reload_from and reload_to, or neither")
    first, end = parse_window_start(reload_from), parse_window_start(reload_to)
    if end <= first:
        raise ReloadRangeError(
            f"reload_from {first.isoformat()} is not before reload_to {end.isoformat()}: "
            "the range [reload_from, reload_to) is empty; give the earlier hour first"
        )
    return first, end


def catch_up(
    settings: Settings,
    run_id: str = "",
    try_number: int = 0,
    reload_from: str | None = None,
    reload_to: str | None = None,
) -> dict:
    """Resolve a batch of history; return its IngestReport as a dict (``remaining`` included).

    Without ``reload_from``/``reload_to`` the batch takes the unresolved windows between
    ``start_date`` and the lateness horizon, for up to ``catchup.batch_seconds``. With both,
    it reloads every table of every window in ``[reload_from, reload_to)``, whatever their
    state, with no time limit: an operator's way to reprocess a range loaded in bulk.
    """
    now = clock.now()
    reload_range = parse_reload_range(reload_from, reload_to)
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        ensure_schema(hook, settings)
        # Once per batch: staged rows of killed and failed loads anywhere in history.
        sweep_orphaned_loads(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        if reload_range is not None:
            first, end = reload_range
            log.info("Reloading every window in [%s, %s)", first.isoformat(), end.isoformat())
            report = load_windows(loader, every_window(settings, first, end), now, run_id, try_number)
        else:
            end = history_end(settings, now)
            recheck = None
            if settings.source.recheck_days:
                # Late, changed and deleted objects of recent history become unresolved
                # windows (or a report) before the batch picks what to load.
                recheck = recheck_bucket(hook, loader.bucket, settings, end, run_id, try_number)
                found = recheck.message()
                if found:
                    alerts.send_telegram_message(alerts.escape_within(found, alerts.MESSAGE_LIMIT))
            pending = unresolved_windows(hook, settings, settings.start_date, end)
            log.info(
                "%d window(s) between %s and %s lack a final row; resolving them for up to %d s",
                len(pending),
                settings.start_date.isoformat(),
                end.isoformat(),
                settings.catchup.batch_seconds,
            )
            deadline = time.monotonic() + settings.catchup.batch_seconds
            report = load_windows(loader, pending, now, run_id, try_number, deadline=deadline)
            if recheck is not None:
                report.recheck = recheck.to_dict()
        report.remaining = len(
            unresolved_windows(hook, settings, settings.start_date, history_end(settings, now))
        )
    log.info(
        "Resolved %d window(s) (%d commits, %d rows, %d absent, %d rejected, %d failed); %d left",
        report.windows,
        report.committed,
        report.rows,
        report.absent_objects,
        report.rejected_objects,
        report.failed_objects,
        report.remaining,
    )
    return report.to_dict()
