"""The purchase marts: a refresh whose cost follows the change, committed for all five at once.

Each mart ``<mart>`` is a view over ``<mart>_versions``, which holds rows under the version
of the refresh that wrote them; the view shows, for every hour, the rows of the newest
committed version covering it (``include/sql/create_marts.sql``, ``create_mart_views.sql``).
The marts work from durable state, never from Asset events alone. A refresh

1. claims the queue ``marts_pending_commits`` (a materialized view adds every commit row of
   ``ingest_log`` to it) into a table of its own: the commits it applies. Reading
   the queue costs what changed, whatever the length of the history;
2. takes the event hours their windows touch (the window's event-time span over all its
   browser_events loads, old ones included, read by primary key), widened by one hour and
   the journey look-back: a purchase up to the look-back after a changed event has it in
   its journey;
3. records a new version as ``started``, then recomputes those hours in chunks of at most
   ``marts.chunk_hours``: each chunk stages its events and their look-back, read only from
   the windows that can hold them (``marts_window_hours``), and appends the five marts' rows
   for its hours under the version. Memory follows the chunk, not the hours to recompute;
4. commits: one row in ``marts_versions``. The refreshed hours of all five marts become
   visible together; readers never see a half-written or an empty state;
5. records the claimed commits in the watermark ``marts_applied_loads`` and takes them out
   of the queue. A crash before this step makes the next refresh recompute the same hours,
   with the same result: the refresh is idempotent;
6. deletes the rows that earlier commits hid, and the rows of refreshes that died before
   their commit, then settles: see :func:`collect_garbage`.

An empty watermark (first run, or after a truncate) means a full rebuild: the same steps
over every hour with an event, as a version of kind ``full``, which hides every older row.

Refreshes may overlap (a manual rebuild beside a scheduled refresh, an attempt the
scheduler lost track of beside its retry), and a truncate may come in the middle of one;
the warehouse keeps them apart, not Airflow:

* each refresh has working tables of its own (claimed commits, staged events);
* the newest committed version wins in each hour, so of two overlapping refreshes the later
  one is what readers see; commits neither applied stay queued for the next refresh;
* a refresh commits only within ``marts.refresh_deadline_seconds`` of its start, and the
  clean-up deletes what an uncommitted version left only once it is twice as old, so it never
  deletes rows a live refresh still writes; nor does it settle past a live refresh's version;
* a truncate writes a fence (``truncations``) above every running refresh's version: what
  those refreshes write afterwards is invisible and leaves the watermark empty, so the next
  refresh rebuilds in full from what is left. A fenced refresh fails, saying so.

Every SQL text lives in ``include/sql``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from clickstream import clock
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
STARTED, COMMITTED, SETTLED, ABANDONED = "started", "committed", "settled", "abandoned"
QUEUE = "marts_pending_commits"
WINDOW_INDEX = "marts_window_hours"
WATERMARK = "marts_applied_loads"
_HOUR_FORMAT = "%Y-%m-%d %H:%M:%S"
_HOUR = timedelta(hours=1)

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


@dataclass(frozen=True)
class Version:
    """One row of ``marts_versions``: a version of the marts' rows and where it stands."""

    version: int
    status: str
    kind: str
    ranges: tuple[HourRange, ...]
    age_seconds: int = 0


class MartsRefreshFenced(RuntimeError):
    """A truncate came while the refresh ran: nothing it wrote is visible; the next rebuilds."""


class MartsRefreshDeadlineExceeded(RuntimeError):
    """The refresh ran past ``marts.refresh_deadline_seconds`` and did not commit."""


@dataclass(frozen=True)
class _WorkingTables:
    """A refresh's own working tables, so that overlapping refreshes never share one."""

    claimed: str
    stage: str

    @classmethod
    def new(cls) -> _WorkingTables:
        suffix = uuid.uuid4().hex[:16]
        return cls(claimed=f"marts_claimed_commits_{suffix}", stage=f"marts_events_stage_{suffix}")


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did; JSON-serialisable for XCom and the marts' Asset event.

    ``version`` is 0 when nothing had to be recomputed.
    """

    mode: str
    ranges: list[list[str]] = field(default_factory=list)
    hours: int = 0
    loads_applied: int = 0
    version: int = 0
    chunks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _database(settings: Settings) -> dict:
    return {"database": settings.warehouse.database}


def _in_window(settings: Settings) -> dict:
    # Events stamped further than this outside their window are left out of the marts.
    return {"tolerance_hours": settings.source.event_time_tolerance_hours}


def ensure_marts_schema(hook: ClickHouseHook, settings: Settings) -> None:
    """Create the raw layer if needed, then the marts' tables, queue and views.

    Marts of the earlier layout (plain tables replaced whole on each refresh) are dropped
    first and the watermark emptied, so that the next refresh rebuilds them in full.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    """
    ensure_schema(hook, settings)
    _drop_legacy_marts(hook, settings)
    hook.run("create_marts", _database(settings))
    hook.run("create_mart_views", _database(settings))


def _drop_legacy_marts(hook: ClickHouseHook, settings: Settings) -> None:
    names = [*MARTS, *(f"{mart}__next" for mart in MARTS)]
    legacy = [
        name
        for (name,) in hook.run("select_legacy_marts", {**_database(settings), "tables": json.dumps(names)})
    ]
    if not legacy:
        return
    log.warning("Replacing marts of the earlier layout %s: the next refresh rebuilds them in full", legacy)
    for name in legacy:
        hook.run("drop_legacy_mart", {**_database(settings), "table": name})
    hook.run("truncate_table", {**_database(settings), "table": WATERMARK})


def _parse_hour(text: str) -> datetime:
    return datetime.strptime(text, _HOUR_FORMAT)


def _format_hour(value: datetime) -> str:
    return value.strftime(_HOUR_FORMAT)


def affected_range(change: Change, lookback_hours: int) -> HourRange | None:
    """Return the hours ``[first, last + 1 h + look-back)`` a change touches, or None.

    :param change: a commit with its window's event-hour span.
    :param lookback_hours: the journey look-back of the marts.
    """
    if not change.first_hour:
        return None
    end = _parse_hour(change.last_hour) + timedelta(hours=1 + lookback_hours)
    return change.first_hour, _format_hour(end)


def merge_ranges(ranges: Iterable[HourRange]) -> tuple[HourRange, ...]:
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


def split_into_chunks(ranges: Iterable[HourRange], chunk_hours: int) -> list[tuple[HourRange, ...]]:
    """Return ``ranges`` cut into chunks of at most ``chunk_hours`` hours, in order.

    A long range is cut at every ``chunk_hours`` hours; short ranges that follow each other
    share a chunk while it has room, so a batch of scattered late windows is not one chunk
    per window.

    :param ranges: sorted, disjoint ``(from, to)`` hour ranges (see :func:`merge_ranges`).
    :param chunk_hours: the most hours one chunk recomputes.
    """
    chunks: list[tuple[HourRange, ...]] = []
    current: list[HourRange] = []
    room = chunk_hours
    for start_text, end_text in ranges:
        start, end = _parse_hour(start_text), _parse_hour(end_text)
        while start < end:
            if room == 0:
                chunks.append(tuple(current))
                current, room = [], chunk_hours
            piece_end = min(end, start + room * _HOUR)
            current.append((_format_hour(start), _format_hour(piece_end)))
            room -= int((piece_end - start) / _HOUR)
            start = piece_end
    if current:
        chunks.append(tuple(current))
    return chunks


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``), if there is one.

    The embedded engine (chdb) allocates much of a query's memory from the C heap, whose
    per-thread arenas keep what a query freed: chunk after chunk, the process would grow to
    many times one chunk's working set although ClickHouse's own tracked memory stays flat.
    Trimming after each chunk keeps the process at one chunk's working set. A no-op where
    the C library has no ``malloc_trim``; against a ClickHouse server it only trims this
    process's small heap.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    # The symbols of the running process, the C library's among them.
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def _hours(ranges: Iterable[HourRange]) -> int:
    return sum(int((_parse_hour(end) - _parse_hour(start)) / _HOUR) for start, end in ranges)


def _changes(hook: ClickHouseHook, settings: Settings, commits_table: str) -> PendingChanges:
    rows = hook.run(
        "select_marts_changes", {**_database(settings), **_in_window(settings), "commits": commits_table}
    )
    changes = tuple(Change(*row) for row in rows)
    lookback = settings.marts.journey_lookback_hours
    ranges = [found for change in changes if (found := affected_range(change, lookback))]
    return PendingChanges(changes=changes, ranges=merge_ranges(ranges))


def pending_changes(hook: ClickHouseHook, settings: Settings) -> PendingChanges:
    """Return the commits the marts do not reflect yet and the hour ranges they touch.

    Reads the queue only; claims nothing.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database, journey look-back).
    """
    return _changes(hook, settings, QUEUE)


def watermark_is_empty(hook: ClickHouseHook, settings: Settings) -> bool:
    """Return whether the marts reflect no commit at all (never built, or reset).

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    """
    return int(hook.run("select_marts_watermark", _database(settings))[0][0]) == 0


def _record(
    hook: ClickHouseHook,
    settings: Settings,
    version: int,
    status: str,
    kind: str,
    ranges: Iterable[HourRange],
    commits: int = 0,
) -> None:
    hook.run(
        "insert_marts_version",
        {
            **_database(settings),
            "version": version,
            "status": status,
            "kind": kind,
            "ranges": json.dumps([list(pair) for pair in ranges]),
            "commits": commits,
        },
    )


def _next_version(hook: ClickHouseHook, settings: Settings) -> int:
    return int(hook.run("select_marts_next_version", _database(settings))[0][0])


def _check_may_commit(hook: ClickHouseHook, settings: Settings, version: int, started: float) -> None:
    """Raise unless ``version`` may still commit: no truncate fenced it off, and the refresh
    is within its deadline (past it, a later refresh may count it as dead)."""
    fence = int(hook.run("select_marts_fence", _database(settings))[0][0])
    if version <= fence:
        raise MartsRefreshFenced(
            f"a truncate (fence {fence}) came while refresh version {version} ran: nothing it wrote "
            "is visible, and the next refresh rebuilds the marts in full from what is left"
        )
    elapsed = time.monotonic() - started
    deadline = settings.marts.refresh_deadline_seconds
    if elapsed > deadline:
        raise MartsRefreshDeadlineExceeded(
            f"refresh version {version} took {elapsed:.0f} s, longer than marts.refresh_deadline_seconds "
            f"({deadline}); it did not commit, the marts keep their previous content"
        )


def _write_version(
    hook: ClickHouseHook,
    settings: Settings,
    tables: _WorkingTables,
    kind: str,
    ranges: tuple[HourRange, ...],
    commits: int,
    version: int,
    started: float,
) -> int:
    """Recompute ``ranges`` chunk by chunk under ``version`` and commit it.

    :return: the number of chunks.
    :raises MartsRefreshFenced: a truncate came meanwhile; the version did not commit.
    :raises MartsRefreshDeadlineExceeded: past the deadline; the version did not commit.
    """
    # Recorded before any row, so that the rows of a refresh that dies before its commit
    # can be found (by version and hours) and deleted.
    _record(hook, settings, version, STARTED, kind, ranges, commits)
    chunks = split_into_chunks(ranges, settings.marts.chunk_hours)
    for number, chunk in enumerate(chunks, start=1):
        params = {
            **_database(settings),
            "stage": tables.stage,
            "version": version,
            "hour_ranges": json.dumps([list(pair) for pair in chunk]),
            **_in_window(settings),
            "lookback_hours": settings.marts.journey_lookback_hours,
            "purchase_page_path": settings.marts.purchase_page_path,
            "checkout_paths": json.dumps(list(settings.marts.checkout_paths)),
        }
        hook.run("fill_marts_events_stage", params)
        for mart in MARTS:
            hook.run(f"fill_{mart}", params)
        _return_freed_memory()
        log.info("Version %d: chunk %d of %d written (%d hours)", version, number, len(chunks), _hours(chunk))
    _drop_working_table(hook, settings, tables.stage)
    _check_may_commit(hook, settings, version, started)
    _record(hook, settings, version, COMMITTED, kind, ranges, commits)
    return len(chunks)


def _apply(
    hook: ClickHouseHook, settings: Settings, tables: _WorkingTables, commits_table: str, version: int
) -> None:
    """Record the commits of ``commits_table`` in the watermark under ``version``, then take
    the claimed ones out of the queue."""
    hook.run(
        "insert_marts_applied_loads", {**_database(settings), "commits": commits_table, "version": version}
    )
    hook.run("delete_marts_pending_commits", {**_database(settings), "claimed": tables.claimed})
    _drop_working_table(hook, settings, tables.claimed)


def _versions(hook: ClickHouseHook, settings: Settings) -> list[Version]:
    return [
        Version(int(version), status, kind, tuple((start, end) for start, end in ranges), int(age))
        for version, status, kind, ranges, age in hook.run(
            "select_marts_versions", {**_database(settings), "now": clock.warehouse_now(hook)}
        )
    ]


def _dead_after_seconds(settings: Settings) -> int:
    # A refresh gives up at its deadline; at twice that, what it left belongs to a dead one.
    return 2 * settings.marts.refresh_deadline_seconds


def collect_garbage(hook: ClickHouseHook, settings: Settings, current: int) -> int | None:
    """Delete the rows that no reader can see any more, then settle; return the settled version.

    The versions committed before ``current`` and not settled yet hid older rows: those of
    their hours (or, for a full rebuild, all older rows). Versions that never committed,
    abandoned by a refresh that failed or started twice ``marts.refresh_deadline_seconds``
    ago (a refresh that was killed), left invisible rows in their hours, and a killed one
    its working tables. All of them are deleted, hours
    and versions given, then the newest such commit is settled: its row in
    ``marts_versions`` tells the views that rows up to it are each the only version of
    their hour, and the rows before it are deleted. Rows hidden by ``current`` itself wait
    for the next refresh, so that a query that began under the previous commit still
    finds what it saw. A version still being written by another refresh is left alone, and
    nothing at or above it is settled: it may still commit.

    Idempotent: a crash anywhere here leaves work that the next refresh does again.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings (database).
    :param current: the version this refresh just committed.
    :return: the version settled now, or None when there was nothing to settle.
    """
    versions = _versions(hook, settings)
    settled = max((v.version for v in versions if v.status == SETTLED), default=0)
    committed = {v.version: v for v in versions if v.status == COMMITTED}
    abandoned = {v.version for v in versions if v.status == ABANDONED}
    uncommitted = [v for v in versions if v.status == STARTED and v.version not in committed]
    dead_after = _dead_after_seconds(settings)
    leftovers = [
        v
        for v in uncommitted
        if v.version < current and (v.version in abandoned or v.age_seconds > dead_after)
    ]
    in_flight = [v.version for v in uncommitted if v.version not in abandoned and v.age_seconds <= dead_after]
    settle_below = min([current, *in_flight])
    to_settle = sorted(number for number in committed if settled < number < settle_below)
    hidden_before = max((number for number in to_settle if committed[number].kind == FULL), default=0)
    rules = [
        (start, end, 0, number)
        for number in to_settle
        if number > hidden_before
        for start, end in committed[number].ranges
    ]
    rules += [(start, end, v.version, v.version + 1) for v in leftovers for start, end in v.ranges]
    for mart in MARTS:
        table = {**_database(settings), "table": f"{mart}_versions"}
        if hidden_before:
            hook.run("delete_mart_rows_before_version", {**table, "version": hidden_before})
        if rules:
            hook.run("delete_mart_hidden_rows", {**table, "rules": json.dumps(rules)})
    if leftovers:
        log.info("Deleted the rows of versions that never committed: %s", [v.version for v in leftovers])
    _drop_dead_working_tables(hook, settings)
    if not to_settle:
        return None
    newest = committed[to_settle[-1]]
    _record(hook, settings, newest.version, SETTLED, newest.kind, newest.ranges)
    hook.run("delete_marts_versions", {**_database(settings), "settled": newest.version})
    return newest.version


def _drop_dead_working_tables(hook: ClickHouseHook, settings: Settings) -> None:
    dead = hook.run(
        "select_marts_working_tables",
        {
            "database": settings.warehouse.database,
            "older_than_seconds": _dead_after_seconds(settings),
            "now": clock.warehouse_now(hook),
        },
    )
    for (name,) in dead:
        _drop_working_table(hook, settings, name)
    if dead:
        log.info("Dropped the working tables of refreshes that died: %s", [name for (name,) in dead])


def _drop_working_table(hook: ClickHouseHook, settings: Settings, name: str) -> None:
    hook.run("drop_marts_working_table", {**_database(settings), "table": name})


def _result(mode: str, ranges: tuple[HourRange, ...], loads: int, version: int, chunks: int, started: float):
    return RefreshResult(
        mode=mode,
        ranges=[list(pair) for pair in ranges],
        hours=_hours(ranges),
        loads_applied=loads,
        version=version,
        chunks=chunks,
        seconds=round(time.monotonic() - started, 3),
    )


def _data_ranges(hook: ClickHouseHook, settings: Settings) -> tuple[HourRange, ...]:
    """Every hour with an event, as merged ranges: the hours a full rebuild recomputes."""
    spans = hook.run("select_marts_data_spans", {**_database(settings), **_in_window(settings)})
    return merge_ranges((first, _format_hour(_parse_hour(last) + _HOUR)) for first, last in spans)


def _full_rebuild(
    hook: ClickHouseHook, settings: Settings, tables: _WorkingTables, version: int, started: float
) -> RefreshResult:
    hook.run("fill_marts_claimed_commits", {**_database(settings), "claimed": tables.claimed})
    hook.run("fill_marts_window_hours_in_full", {**_database(settings), **_in_window(settings)})
    commits = int(hook.run("select_marts_commit_count", _database(settings))[0][0])
    ranges = _data_ranges(hook, settings)
    chunks = _write_version(hook, settings, tables, FULL, ranges, commits, version, started)
    # Every commit of ingest_log enters the watermark; the queue loses only what this
    # rebuild claimed, so commits that landed while it ran are applied again next time.
    _apply(hook, settings, tables, "ingest_log", version)
    collect_garbage(hook, settings, version)
    result = _result(FULL, ranges, commits, version, chunks, started)
    log.info(
        "Rebuilt the marts in full as version %d: %d commits, %d hours with events in %d chunks, %.1f s",
        version,
        result.loads_applied,
        result.hours,
        chunks,
        result.seconds,
    )
    return result


def full_rebuild(hook: ClickHouseHook, settings: Settings) -> RefreshResult:
    """Rebuild every mart from all raw data, in chunks, and record every commit as applied.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings.
    """
    started = time.monotonic()
    ensure_marts_schema(hook, settings)
    with _claimed_version(hook, settings) as (version, tables):
        return _full_rebuild(hook, settings, tables, version, started)


@contextmanager
def _claimed_version(hook: ClickHouseHook, settings: Settings) -> Iterator[tuple[int, _WorkingTables]]:
    """Take a new version and working tables, and put the version on record as started before
    anything is read, so that a truncate from here on fences it off and other refreshes see it
    in flight. A refresh that fails records its version as abandoned, for the next refresh to
    delete its rows, and drops its working tables; one that is killed cannot, and what it left
    is cleaned up once it is twice ``marts.refresh_deadline_seconds`` old."""
    version = _next_version(hook, settings)
    tables = _WorkingTables.new()
    _record(hook, settings, version, STARTED, "", ())
    try:
        yield version, tables
    except BaseException:
        with suppress(Exception):
            _record(hook, settings, version, ABANDONED, "", ())
            for name in (tables.claimed, tables.stage):
                _drop_working_table(hook, settings, name)
        raise


def refresh(hook: ClickHouseHook, settings: Settings) -> RefreshResult:
    """Bring the marts up to date with every commit of ``ingest_log``.

    An empty watermark means a full rebuild; otherwise only the hours the queued commits
    touch are recomputed. Nothing queued: nothing is rewritten.

    :param hook: an open warehouse hook.
    :param settings: the bundle's settings.
    """
    started = time.monotonic()
    ensure_marts_schema(hook, settings)
    with _claimed_version(hook, settings) as (version, tables):
        return _refresh(hook, settings, tables, version, started)


def _refresh(
    hook: ClickHouseHook, settings: Settings, tables: _WorkingTables, version: int, started: float
) -> RefreshResult:
    if watermark_is_empty(hook, settings):
        log.info("The marts' watermark is empty: rebuilding in full")
        return _full_rebuild(hook, settings, tables, version, started)
    hook.run("fill_marts_claimed_commits", {**_database(settings), "claimed": tables.claimed})
    claimed = _changes(hook, settings, tables.claimed)
    chunks = 0
    if claimed.ranges:
        hook.run(
            "fill_marts_window_hours",
            {**_database(settings), **_in_window(settings), "claimed": tables.claimed},
        )
        chunks = _write_version(
            hook, settings, tables, INCREMENTAL, claimed.ranges, len(claimed.changes), version, started
        )
    else:
        # Nothing to recompute: an empty commit, so that the version is not in flight.
        _check_may_commit(hook, settings, version, started)
        _record(hook, settings, version, COMMITTED, INCREMENTAL, (), len(claimed.changes))
    _apply(hook, settings, tables, tables.claimed, version)
    if chunks:
        collect_garbage(hook, settings, version)
    else:
        version = 0
    result = _result(INCREMENTAL, claimed.ranges, len(claimed.changes), version, chunks, started)
    log.info(
        "Refreshed the marts: %d commits applied, %d hours recomputed in %s as version %d, %.1f s",
        result.loads_applied,
        result.hours,
        result.ranges,
        version,
        result.seconds,
    )
    return result


def table_checksums(hook: ClickHouseHook, settings: Settings) -> dict[str, str]:
    """Return ``{mart: "rows:hash"}`` of what readers see, equal for equal content in any order.

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
        result = refresh(hook, settings).to_dict()
        publish_snapshot(hook, settings)
        return result


SNAPSHOT_LINK = "current"
"""The name, in the snapshot directory, of the link to the newest complete snapshot."""
SNAPSHOT_STRUCTURES = "structures.json"
"""The file, in each snapshot, that gives each mart's columns as a file() structure."""


def publish_snapshot(hook: ClickHouseHook, settings: Settings) -> Path | None:
    """Write what readers see of the five marts to ``hook.marts_snapshot_dir``, if it has one.

    Each snapshot is a new folder holding one Native file per mart and their structures
    (``SNAPSHOT_STRUCTURES``); the link ``SNAPSHOT_LINK`` is then switched to it in one
    rename, so a reader in another process sees one snapshot or the next, never a mix. The
    folder before it stays for readers still in it; older ones are deleted.

    :return: the new snapshot's folder, or None when the warehouse publishes none.
    """
    directory = hook.marts_snapshot_dir
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    snapshot = directory / f"marts-{time.time_ns()}"
    snapshot.mkdir()
    for mart in MARTS:
        hook.run(
            "export_mart_snapshot",
            {**_database(settings), "mart": mart, "path": str(snapshot / f"{mart}.native")},
        )
    structures = dict(
        hook.run("select_mart_structures", {"database": settings.warehouse.database, "marts": list(MARTS)})
    )
    (snapshot / SNAPSHOT_STRUCTURES).write_text(json.dumps(structures, indent=2, sort_keys=True))
    link = directory / SNAPSHOT_LINK
    staged_link = directory / f".{SNAPSHOT_LINK}-{uuid.uuid4().hex}"
    staged_link.symlink_to(snapshot.name)
    staged_link.replace(link)
    for stale in sorted(directory.glob("marts-*"))[:-2]:
        shutil.rmtree(stale, ignore_errors=True)
    log.info("Published the marts for readers in %s", snapshot)
    return snapshot


def attach_snapshot(hook: ClickHouseHook, settings: Settings, snapshot_dir: Path) -> None:
    """Show, on ``hook``'s own warehouse, the marts last published to ``snapshot_dir``.

    For a reader in another process than the one writing (the local stack's dashboards):
    the five marts appear under their usual names and columns, and each query reads the
    snapshot current when it runs. A snapshot must have been published first.

    :param hook: an open hook on the reader's own (embedded) warehouse.
    :param snapshot_dir: the writing warehouse's ``marts_snapshot_dir``.
    """
    current = snapshot_dir / SNAPSHOT_LINK
    structures = json.loads((current / SNAPSHOT_STRUCTURES).read_text())
    for mart in MARTS:
        hook.run(
            "create_mart_snapshot_table",
            {
                **_database(settings),
                "mart": mart,
                "path": str(current / f"{mart}.native"),
                "structure": structures[mart],
            },
        )
