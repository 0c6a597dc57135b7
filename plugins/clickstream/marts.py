"""The purchase marts: an incremental, atomic refresh downstream of ingest.

The marts work from durable state, never from Asset events alone: ``marts_applied_loads``
(the watermark) holds every commit of ``ingest_log`` the marts already reflect. A refresh

1. reads the commits not in the watermark and the event hours their windows touch (the
   window's event-time span over all its browser_events commits, old ones included, widened
   by one hour and the journey look-back: a purchase up to the look-back after a changed event
   has it in its journey);
2. fills ``marts_events_stage`` with the deduplicated events of those hours and their
   look-back, read only from the windows that can hold them;
3. rebuilds each mart as ``<mart>__next`` (its rows outside the hours + the recomputed rows)
   and swaps it in with ``EXCHANGE TABLES``: readers see the old or the new mart, never a
   half-written one;
4. records the commits in the watermark. A crash before this step makes the next refresh
   recompute the same hours, with the same result: the refresh is idempotent.

An empty watermark (first run, or after a reset) means a full rebuild. Refreshes must not run
concurrently (the marts DAG runs one at a time); every SQL text lives in ``include/sql``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from clickstream.config import Settings
from clickstream.loading import ensure_schema
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

MARTS = (
    "mart_hourly_events",
    "mart_leading_pages",
    "mart_purchases_by_source",
    "mart_users_by_source",
    "mart_purchases_by_region",
)
FULL = "full"
INCREMENTAL = "incremental"
# Hours a full rebuild recomputes: every hour a DateTime('UTC') can hold, so no old row survives.
ALL_HOURS = ("1970-01-01 00:00:00", "2106-01-01 00:00:00")
_HOUR_FORMAT = "%Y-%m-%d %H:%M:%S"

HourRange = tuple[str, str]


@dataclass(frozen=True)
class Change:
    """One commit the marts must reflect, and the hours its window's events span.

    ``first_hour``/``last_hour`` are empty when the window holds no browser events.
    """

    load_id: str
    table_name: str
    window_start: str
    first_hour: str
    last_hour: str


@dataclass(frozen=True)
class PendingChanges:
    """Commits not reflected by the marts yet, and the merged hour ranges to recompute."""

    changes: tuple[Change, ...]
    ranges: tuple[HourRange, ...]

    @property
    def load_ids(self) -> list[str]:
        return [change.load_id for change in self.changes]


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did; JSON-serialisable for XCom and the marts' Asset event."""

    mode: str
    ranges: list[list[str]] = field(default_factory=list)
    hours: int = 0
    loads_applied: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _database(settings: Settings) -> dict:
    return {"database": settings.warehouse.database}


def ensure_marts_schema(hook: ClickHouseHook, settings: Settings) -> None:
    """Create the raw layer if needed, then the marts, the watermark and the marts' views.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    """
    ensure_schema(hook, settings)
    hook.run("create_marts", _database(settings))
    hook.run("create_mart_views", _database(settings))


def _parse_hour(text: str) -> datetime:
    return datetime.strptime(text, _HOUR_FORMAT)


def affected_range(change: Change, lookback_hours: int) -> HourRange | None:
    """Return the hours ``[first, last + 1 h + look-back)`` a change touches, or None.

    :param change: a commit with its window's event-hour span.
    :param lookback_hours: the journey look-back of the marts.
    """
    if not change.first_hour:
        return None
    end = _parse_hour(change.last_hour) + timedelta(hours=1 + lookback_hours)
    return change.first_hour, end.strftime(_HOUR_FORMAT)


def merge_ranges(ranges: list[HourRange]) -> tuple[HourRange, ...]:
    """Return the union of hour ranges as sorted, disjoint, non-adjacent ranges.

    :param ranges: ``(from, to)`` pairs of UTC hours as ``YYYY-MM-DD HH:MM:SS`` text.
    """
    merged: list[list[str]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def _changes(hook: ClickHouseHook, settings: Settings, only_pending: bool) -> PendingChanges:
    rows = hook.run("select_marts_changes", {**_database(settings), "only_pending": int(only_pending)})
    changes = tuple(Change(*row) for row in rows)
    lookback = settings.marts.journey_lookback_hours
    ranges = [found for change in changes if (found := affected_range(change, lookback))]
    return PendingChanges(changes=changes, ranges=merge_ranges(ranges))


def pending_changes(hook: ClickHouseHook, settings: Settings) -> PendingChanges:
    """Return the commits the marts do not reflect yet and the hour ranges they touch.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database, journey look-back).
    """
    return _changes(hook, settings, only_pending=True)


def watermark_is_empty(hook: ClickHouseHook, settings: Settings) -> bool:
    """Return whether the marts reflect no commit at all (never built, or reset).

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    """
    return int(hook.run("select_marts_watermark", _database(settings))[0][0]) == 0


def _hours(ranges: tuple[HourRange, ...]) -> int:
    return sum(int((_parse_hour(end) - _parse_hour(start)).total_seconds() // 3600) for start, end in ranges)


def _rebuild(hook: ClickHouseHook, settings: Settings, ranges: tuple[HourRange, ...]) -> None:
    """Recompute every mart for ``ranges`` and swap each one in atomically."""
    params = {
        **_database(settings),
        "hour_ranges": json.dumps([list(pair) for pair in ranges]),
        "lookback_hours": settings.marts.journey_lookback_hours,
        "purchase_page_path": settings.marts.purchase_page_path,
        "checkout_paths": json.dumps(list(settings.marts.checkout_paths)),
    }
    hook.run("fill_marts_events_stage", params)
    for mart in MARTS:
        hook.run(f"refresh_{mart}", params)
        log.info("Swapped in %s", mart)
    hook.run("drop_marts_events_stage", _database(settings))


def _apply(hook: ClickHouseHook, settings: Settings, changes: PendingChanges) -> None:
    """Record ``changes`` in the watermark: the marts now reflect them."""
    if changes.changes:
        hook.run(
            "insert_marts_applied_loads", {**_database(settings), "load_ids": json.dumps(changes.load_ids)}
        )


def _result(mode: str, changes: PendingChanges, started: float) -> RefreshResult:
    return RefreshResult(
        mode=mode,
        ranges=[list(pair) for pair in changes.ranges],
        hours=_hours(changes.ranges),
        loads_applied=len(changes.changes),
        seconds=round(time.monotonic() - started, 3),
    )


def full_rebuild(hook: ClickHouseHook, settings: Settings) -> RefreshResult:
    """Rebuild every mart from all raw data and record every commit as applied.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings.
    """
    started = time.monotonic()
    ensure_marts_schema(hook, settings)
    every = _changes(hook, settings, only_pending=False)
    _rebuild(hook, settings, (ALL_HOURS,))
    _apply(hook, settings, every)
    result = _result(FULL, every, started)
    log.info(
        "Rebuilt the marts in full: %d commits, %d hours with data, %.1f s",
        result.loads_applied,
        result.hours,
        result.seconds,
    )
    return result


def refresh(hook: ClickHouseHook, settings: Settings) -> RefreshResult:
    """Bring the marts up to date with every commit of ``ingest_log``.

    An empty watermark means a full rebuild; otherwise only the hours the pending commits
    touch are recomputed. Nothing pending: nothing is rewritten.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings.
    """
    started = time.monotonic()
    ensure_marts_schema(hook, settings)
    if watermark_is_empty(hook, settings):
        log.info("The marts' watermark is empty: rebuilding in full")
        return full_rebuild(hook, settings)
    pending = pending_changes(hook, settings)
    if pending.ranges:
        _rebuild(hook, settings, pending.ranges)
    _apply(hook, settings, pending)
    result = _result(INCREMENTAL, pending, started)
    log.info(
        "Refreshed the marts: %d commits applied, %d hours recomputed in %s, %.1f s",
        result.loads_applied,
        result.hours,
        result.ranges,
        result.seconds,
    )
    return result


def table_checksums(hook: ClickHouseHook, settings: Settings) -> dict[str, str]:
    """Return ``{mart: "rows:hash"}``, equal for marts with equal content in any order.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    """
    rows = hook.run("select_mart_checksums", _database(settings))
    return {name: f"{count}:{digest}" for name, count, digest in rows}


def refresh_warehouse(settings: Settings) -> dict:
    """Open the configured warehouse, refresh the marts and return the result as a dict.

    The task body of the marts DAG: one hook, closed afterwards (chdb allows one open data
    path per process).

    :param settings: the bundle's settings (warehouse connection, database, marts).
    """
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        return refresh(hook, settings).to_dict()
