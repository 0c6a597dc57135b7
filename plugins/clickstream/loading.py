"""Loading hours of the source tables into the warehouse, atomically and idempotently.

A load appends the object's rows to ``<table>_loads`` under a fresh ``load_id``; nobody
sees them yet, because the view ``<table>`` shows a window only from the load whose commit
row in ``ingest_log`` is the newest. The commit is one single-row INSERT, which ClickHouse
applies atomically, so a reader sees the window's previous content or its new content,
never a mix. Loads of different windows, or of the same window, never write the same rows,
so they can run concurrently even inside one partition: nothing is read-modified-written.

Every attempt writes a ``started`` row before anything else, so one that is killed stays
visible. Rows no reader will see again (of superseded, failed and abandoned loads) are
deleted afterwards, which only saves space: by the next load of the window, or by
``sweep_orphaned_loads``. A load that has not committed within
``ingest.load_deadline_seconds`` of its start gives up instead of committing, so staged
rows older than that belong to a dead process and may be deleted while other loads run.

``load_windows`` resolves many windows in one task (the live hour, or a catch-up batch):
present objects load one by one, objects absent past the lateness horizon are recorded in
one INSERT (``missing``, or ``skipped`` commits), a rejected object is recorded and the batch
goes on. What an operator must act on is gathered into one report (``problems``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from airflow.sdk.exceptions import AirflowFailException

from clickstream import clock
from clickstream.config import Settings, SourceTable, utc_hour
from clickstream.records import RecordReader
from clickstream.source import (
    SourceBucket,
    SourceError,
    SourceFormatError,
    SourceObjectMissing,
    day_prefix,
    member_name,
    object_key,
    verify_member,
)
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
# Bounded parameter size for the one INSERT that records absent objects.
_ABSENT_ROWS_PER_INSERT = 1000
# Rejected and failed objects, and runs of absent hours, listed one by one in a report; the
# rest are counted.
_LISTED = 20
# Windows in a row whose every load failed: the warehouse or the bucket is down, not one
# window at fault, and the batch stops rather than put all of history on a retry delay.
_FAILED_WINDOWS_THAT_STOP_A_BATCH = 3
_SECOND = "%Y-%m-%d %H:%M:%S"
_MICROSECOND = "%Y-%m-%d %H:%M:%S.%f"


class WindowError(ValueError):
    """The run does not say which hour to load."""


class WarehouseRejectedObject(RuntimeError):
    """ClickHouse refused an object that the reference reader accepts; names the object."""


class LoadDeadlineExceeded(RuntimeError):
    """A load ran past ``ingest.load_deadline_seconds`` and did not commit; names the object."""


class LoadOvertakenByTruncate(RuntimeError):
    """A truncate of the raw layer came while the load ran: its commit does not stand; names the object."""


class WindowLoadFailed(RuntimeError):
    """Loads of the live window failed (not a damaged object): the task fails and is retried."""


class SourceObjectLate(SourceError):
    """An object is absent while its window is still within the lateness horizon.

    Never resolved as absent: the task fails and is retried, or the sensor waits.
    """


@dataclass(frozen=True)
class LoadResult:
    """What one load did; JSON-serialisable for XCom and the Asset event."""

    table: str
    window_start: str
    load_id: str
    status: str
    rows: int
    source_key: str
    source_etag: str
    source_bytes: int
    min_event_time: str
    max_event_time: str
    out_of_window_rows: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _LoadStats:
    """A staged load's rows, and the event-time range of those within their window."""

    rows: int = 0
    out_of_window_rows: int = 0
    min_event_time: str = ""
    max_event_time: str = ""


def parse_window_start(value: str) -> datetime:
    """Return the UTC hour that ``value`` (an ISO timestamp on an hour boundary) names."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(
            f"window_start {value!r} is not an ISO timestamp such as 2024-04-10T23:00:00Z"
        ) from None
    try:
        return utc_hour(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except ValueError as error:
        raise WindowError(f"window_start {value!r}: {error}") from None


def resolve_window(window_start_param: str | None, data_interval_start: datetime | None) -> datetime:
    """Return the start of the hour a run loads: the ``window_start`` param, else the data interval.

    :raises WindowError: neither is given (a manual or asset-triggered run without the param).
    """
    if window_start_param:
        return parse_window_start(window_start_param)
    if data_interval_start is not None:
        return parse_window_start(data_interval_start.isoformat())
    raise WindowError(
        "this run has no data interval and no window_start param: trigger it with "
        '{"window_start": "2024-04-10T23:00:00Z"} (the hour to load), or clear a scheduled run'
    )


# The widest range of DateTime, for a sweep over every window.
_ALL_WINDOWS = {"from_window": "1970-01-01 00:00:00", "to_window": "2106-02-07 06:28:15"}


def ensure_schema(hook: ClickHouseHook, settings: Settings) -> None:
    """Create the database, the truncate fences, the ingest log and every source table that
    does not exist yet."""
    database = {"database": settings.warehouse.database}
    hook.run("create_database", database)
    hook.run("create_truncations", database)
    hook.run("create_ingest_log", database)
    for table in settings.tables:
        hook.run(f"create_{table.name}", database)


class WindowLoader:
    """Loads windows of source tables from one bucket into one warehouse.

    :param hook: an open warehouse hook.
    :param bucket: the source bucket.
    :param settings: the bundle's settings (database, layout, lateness horizon, absent-object outcome).
    """

    def __init__(self, hook: ClickHouseHook, bucket: SourceBucket, settings: Settings):
        self.hook = hook
        self.bucket = bucket
        self.settings = settings

    def load(
        self, table: SourceTable, window_start: datetime, run_id: str = "", try_number: int = 0
    ) -> LoadResult:
        """Replace ``table``'s content for the hour at ``window_start`` with its source object.

        :raises SourceObjectMissing: the object is absent; the attempt ends as ``absent``, which
            resolves nothing (the caller records absence, see ``record_absent``).
        :raises SourceFormatError: the object is not a ZIP with the table's JSON lines, or a
            member is damaged; the message names bucket, key and (where one is at fault)
            line. The window keeps its previous content.
        :raises LoadDeadlineExceeded: the load took longer than its deadline; nothing changed.
        """
        key = object_key(self.settings.source.key_template, window_start, table.name)
        attempt = _Attempt(table, window_start, key, run_id, try_number)
        # On record before anything is staged: an attempt killed from here on leaves this row.
        self._log(attempt, status="started")
        attempt.raw_fence = int(
            self.hook.run("select_raw_fence", {"database": self.settings.warehouse.database})[0][0]
        )
        try:
            result = self._stage_and_commit(attempt)
        except SourceObjectMissing as missing:
            # Absence is no failed attempt: the caller knows whether the window is still
            # within the lateness horizon, and records it with record_absent() once it is not.
            # The attempt's own record ends as 'absent', which resolves nothing.
            self._log(attempt, status="absent", error=str(missing))
            raise
        except Exception as error:
            self._record_failure(attempt, error)
            raise
        self._delete_orphans(table, [window_start])
        return result

    def record_absent(
        self,
        absent: Sequence[tuple[SourceTable, datetime]],
        now: datetime,
        run_id: str = "",
        try_number: int = 0,
        listed_since: str | None = None,
    ) -> tuple[str, list[tuple[SourceTable, datetime]]]:
        """Record objects absent past the lateness horizon, all in one INSERT.

        Outcome ``fail`` writes a ``missing`` row per object; ``skip`` commits each window
        empty for its table (``skipped``), replacing what the window showed before, but
        never a load another task committed at or after ``listed_since`` (the warehouse
        time before the objects were found absent; default: now): that object arrived.

        :return: the status written, and the objects it was written for.
        """
        status = "skipped" if self.settings.source.absent_object_outcome == "skip" else "missing"
        if not absent:
            return status, []
        since = listed_since or clock.warehouse_now(self.hook)
        arrived = self._committed_since(absent, since)
        if arrived:
            log.info("%d object(s) absent at listing were committed by another task since", len(arrived))
            absent = [(table, window) for table, window in absent if (table.name, window) not in arrived]
        horizon = self.settings.source.lateness_horizon_seconds
        rows = []
        for table, window_start in absent:
            age = int((now - (window_start + WINDOW)).total_seconds())
            rows.append(
                [
                    str(uuid.uuid4()),
                    table.name,
                    window_start.strftime(_SECOND),
                    object_key(self.settings.source.key_template, window_start, table.name),
                    f"object absent {age} s after its window ended (lateness horizon {horizon} s)",
                ]
            )
        for chunk_start in range(0, len(rows), _ABSENT_ROWS_PER_INSERT):
            self.hook.run(
                "insert_ingest_log_absent",
                {
                    "database": self.settings.warehouse.database,
                    "status": status,
                    "source_bucket": self.bucket.bucket,
                    "absent": json.dumps(rows[chunk_start : chunk_start + _ABSENT_ROWS_PER_INSERT]),
                    "committed_since": since,
                    "dag_run_id": run_id,
                    "try_number": try_number,
                },
            )
        if status == "skipped" and absent:
            windows_by_table: dict[str, list[datetime]] = {}
            for table, window_start in absent:
                windows_by_table.setdefault(table.name, []).append(window_start)
            for name, windows in windows_by_table.items():
                self._delete_orphans(self.settings.table(name), windows)
        if rows:
            log.warning("%d object(s) absent past the lateness horizon, recorded as %s", len(rows), status)
        return status, list(absent)

    def _committed_since(
        self, objects: Sequence[tuple[SourceTable, datetime]], since: str
    ) -> set[tuple[str, datetime]]:
        windows = [window for _, window in objects]
        rows = self.hook.run(
            "select_commits_since",
            {
                "database": self.settings.warehouse.database,
                "from_window": min(windows).strftime(_SECOND),
                "to_window": max(windows).strftime(_SECOND),
                "since": since,
            },
        )
        return {(name, parse_window_start(window)) for name, window in rows}

    def _delete_orphans(self, table: SourceTable, windows: Sequence[datetime]) -> None:
        """Delete the staged rows no reader will see again in ``table``'s windows from the
        first to the last of ``windows``, if there are any (see ``find_orphaned_loads``)."""
        orphans = find_orphaned_loads(
            self.hook,
            self.settings,
            table,
            from_window=min(windows).strftime(_SECOND),
            to_window=max(windows).strftime(_SECOND),
        )
        delete_loads(self.hook, self.settings, table, orphans)

    def _stage_and_commit(self, attempt: _Attempt) -> LoadResult:
        table = attempt.table
        target = attempt.target(self.settings)
        # The hook stages the object where its engine reads it: a server reads it from the
        # bucket itself, the embedded engine from a local spool.
        with self.hook.stage(self.bucket, attempt.key, member_name(table.name)) as staged:
            attempt.source_etag, attempt.source_bytes = staged.etag, staged.size_bytes
            metadata = {
                "window_start": attempt.window_start.strftime(_SECOND),
                "load_id": attempt.load_id,
                "source_key": attempt.key,
                "source_etag": staged.etag,
                "loaded_at": datetime.now(UTC).strftime(_MICROSECOND),
            }
            attempt.staging_started = True
            try:
                self.hook.load_json_lines(target, table, staged, metadata)
            except Exception as engine_error:
                # The engine's message points at a row of a parallel parser. A damaged member
                # is named first (with the line where its data stops decoding, or its CRC);
                # then the reference reader names the exact line and key at fault.
                local = staged.local_copy()
                verify_member(local.archive_path, local.member, self.bucket.bucket, attempt.key)
                located = RecordReader(table).first_error(local.member_path)
                if located is not None:
                    raise SourceFormatError(
                        self.bucket.bucket, attempt.key, located.reason, located.line
                    ) from None
                raise WarehouseRejectedObject(
                    f"s3://{self.bucket.bucket}/{attempt.key}: ClickHouse rejected the object: {engine_error}"
                ) from engine_error
        stats_params = {
            **target,
            "time_column": table.event_time_column or "window_start",
            "tolerance_hours": self.settings.source.event_time_tolerance_hours,
        }
        rows, out_of_window, min_time, max_time = self.hook.run("select_load_stats", stats_params)[0]
        if table.event_time_column is None:
            min_time = max_time = ""
        return self._commit(attempt, _LoadStats(int(rows), int(out_of_window), min_time, max_time))

    def _commit(self, attempt: _Attempt, stats: _LoadStats) -> LoadResult:
        deadline = self.settings.ingest.load_deadline_seconds
        elapsed = time.monotonic() - attempt.started_monotonic
        if elapsed > deadline:
            # Past its deadline a load may already count as abandoned, and its staged rows
            # be swept: committing now could show a window without its rows.
            raise LoadDeadlineExceeded(
                f"s3://{self.bucket.bucket}/{attempt.key}: the load took {elapsed:.1f} s, longer than "
                f"ingest.load_deadline_seconds ({deadline}); it did not commit, the window keeps its "
                "previous content"
            )
        attempt.commit_sent = True
        self._log(attempt, status="loaded", stats=stats)
        if not self._committed(attempt):
            raise LoadOvertakenByTruncate(
                f"s3://{self.bucket.bucket}/{attempt.key}: a truncate of the raw layer came while the "
                "load ran; its commit does not stand, and the window loads again"
            )
        result = LoadResult(
            table=attempt.table.name,
            window_start=attempt.window_start.isoformat(),
            load_id=attempt.load_id,
            status="loaded",
            rows=stats.rows,
            source_key=attempt.key,
            source_etag=attempt.source_etag,
            source_bytes=attempt.source_bytes,
            min_event_time=stats.min_event_time,
            max_event_time=stats.max_event_time,
            out_of_window_rows=stats.out_of_window_rows,
        )
        log.info(
            "Committed %s window %s: loaded, %d rows from s3://%s/%s",
            result.table,
            result.window_start,
            stats.rows,
            self.bucket.bucket,
            attempt.key,
        )
        if stats.out_of_window_rows:
            log.warning(
                "%d row(s) of s3://%s/%s are stamped more than source.event_time_tolerance_hours (%d) "
                "outside their window: loaded as written, left out of the marts",
                stats.out_of_window_rows,
                self.bucket.bucket,
                attempt.key,
                self.settings.source.event_time_tolerance_hours,
            )
        return result

    def _committed(self, attempt: _Attempt) -> bool:
        params = {**attempt.target(self.settings), "table_name": attempt.table.name}
        return int(self.hook.run("select_load_commit", params)[0][0]) == 1

    def _record_failure(self, attempt: _Attempt, error: Exception) -> None:
        # A rejected object stays rejected until it changes: the catch-up does not retry it.
        # Any other failure (network, warehouse, deadline) leaves the window to be tried again.
        status = "rejected" if isinstance(error, SourceFormatError) else "failed"
        if status == "rejected" and not attempt.source_etag:
            # Rejected before it was staged: the re-check needs the ETag to see it change.
            with suppress(Exception):
                attempt.source_etag = self.bucket.version(attempt.key).etag
        self._log(attempt, status=status, error=f"{type(error).__name__}: {error}")
        if attempt.commit_sent:
            # The commit may have landed before its reply was lost: the rows may be the
            # window's content now. The next load or sweep removes them only if they are not.
            return
        if attempt.staging_started:
            self.hook.run("delete_load_rows", attempt.target(self.settings))

    def _log(self, attempt: _Attempt, status: str, stats: _LoadStats | None = None, error: str = "") -> None:
        stats = stats or _LoadStats()
        params = {
            "database": self.settings.warehouse.database,
            "load_id": attempt.load_id,
            "table_name": attempt.table.name,
            "window_start": attempt.window_start.strftime(_SECOND),
            "source_bucket": self.bucket.bucket,
            "source_key": attempt.key,
            "source_etag": attempt.source_etag,
            "source_bytes": attempt.source_bytes,
            "rows": stats.rows,
            "min_event_time": stats.min_event_time,
            "max_event_time": stats.max_event_time,
            "started_at": attempt.started_at.strftime(_MICROSECOND),
            "duration_ms": int((time.monotonic() - attempt.started_monotonic) * 1000),
            "dag_run_id": attempt.run_id,
            "try_number": attempt.try_number,
        }
        if status == "loaded":
            # A commit has a statement of its own: it is written only if no truncate of the
            # raw layer came since the load began and its staged rows are all there.
            commit = {
                "loads_table": attempt.table.loads_table,
                "raw_fence": attempt.raw_fence,
                "out_of_window_rows": stats.out_of_window_rows,
            }
            self.hook.run("insert_ingest_log_commit", {**params, **commit})
        else:
            self.hook.run("insert_ingest_log", {**params, "status": status, "error": error})


class _Attempt:
    """The identity and progress of one load attempt."""

    def __init__(self, table: SourceTable, window_start: datetime, key: str, run_id: str, try_number: int):
        self.table = table
        self.window_start = window_start
        self.key = key
        self.run_id = run_id
        self.try_number = try_number
        self.load_id = str(uuid.uuid4())
        self.started_at = datetime.now(UTC)
        self.started_monotonic = time.monotonic()
        self.source_etag = ""
        self.source_bytes = 0
        self.staging_started = False
        self.commit_sent = False
        self.raw_fence = 0

    def target(self, settings: Settings) -> dict:
        return {
            "database": settings.warehouse.database,
            "loads_table": self.table.loads_table,
            "window_start": self.window_start.strftime(_SECOND),
            "load_id": self.load_id,
        }


def window_is_past_horizon(settings: Settings, window_start: datetime, now: datetime) -> bool:
    """Return whether an absent object of the window is lost rather than late."""
    return now >= window_start + WINDOW + settings.source.lateness_horizon


def window_ready(settings: Settings, window_start: datetime, now: datetime) -> bool:
    """Return whether the window's load may start: every object is there, or the window is
    past the lateness horizon (its absent objects then resolve by the configured outcome).

    One paginated listing of the day's prefix answers for every table.
    """
    bucket = source_bucket(settings)
    present = bucket.keys_under(day_prefix(settings.source.key_template, window_start))
    keys = [object_key(settings.source.key_template, window_start, name) for name in settings.table_names]
    absent = [key for key in keys if key not in present]
    if not absent:
        return True
    if window_is_past_horizon(settings, window_start, now):
        log.warning(
            "Window %s is past the lateness horizon with %d object(s) absent: resolving it now",
            window_start.isoformat(),
            len(absent),
        )
        return True
    log.info("Waiting for %s", ", ".join(f"s3://{bucket.bucket}/{key}" for key in absent))
    return False


@dataclass
class IngestReport:
    """What one task resolved: windows, commits, absent and rejected objects; JSON-serialisable.

    ``data_seconds``/``absent_seconds`` split the task's time between windows that had at
    least one object and windows whose objects were all absent (listing included). Its size
    is bounded whatever the batch (it travels as XCom): absent objects are kept as runs of
    consecutive hours, and only the first runs and rejected objects are listed.
    """

    windows: int = 0
    first_window: str = ""
    last_window: str = ""
    committed: int = 0
    rows: int = 0
    absent_objects: int = 0
    absent_status: str = ""
    absent_runs: list[list[str]] = field(default_factory=list)
    absent_runs_total: int = 0
    rejected_objects: int = 0
    rejected: list[list[str]] = field(default_factory=list)
    failed_objects: int = 0
    failed: list[list[str]] = field(default_factory=list)
    stopped_early: str = ""
    remaining: int = 0
    data_windows: int = 0
    data_seconds: float = 0.0
    absent_windows: int = 0
    absent_seconds: float = 0.0
    recheck: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def asset_extra(self) -> dict:
        """The Asset event's extra: which windows changed, bounded in size whatever the batch."""
        return {
            "windows": self.windows,
            "first_window": self.first_window,
            "last_window": self.last_window,
            "committed": self.committed,
            "rows": self.rows,
        }


def problems(report: dict) -> str:
    """Return one message listing what an operator must look at, or '' when nothing.

    Absent objects are listed as runs of consecutive hours per table, so a hundred absent
    hours read as one line, not a hundred.
    """
    lines = []
    if report["absent_objects"] and report["absent_status"] == "missing":
        lines.append(
            f"{report['absent_objects']} object(s) absent past the lateness horizon (status missing):"
        )
        lines.extend(f"  {span}: {tables}" for tables, span in report["absent_runs"])
        if report["absent_runs_total"] > len(report["absent_runs"]):
            unlisted = report["absent_runs_total"] - len(report["absent_runs"])
            lines.append(f"  ... and {unlisted} more run(s) of hours: see ingest_log, status 'missing'")
    for table, window_start, error in report["rejected"]:
        lines.append(f"rejected {table} {window_start}: {error.splitlines()[0] if error else ''}")
    if report["rejected_objects"] > len(report["rejected"]):
        unlisted = report["rejected_objects"] - len(report["rejected"])
        lines.append(f"... and {unlisted} more rejected object(s): see ingest_log, status 'rejected'")
    for table, window_start, error in report.get("failed", []):
        lines.append(f"failed {table} {window_start}: {error.splitlines()[0] if error else ''}")
    if report.get("failed_objects", 0) > len(report.get("failed", [])):
        unlisted = report["failed_objects"] - len(report["failed"])
        lines.append(f"... and {unlisted} more failed load(s): see ingest_log, status 'failed'")
    if report.get("stopped_early"):
        lines.append(report["stopped_early"])
    return "\n".join(lines)


def fail_on_problems(report: dict) -> None:
    """Fail the calling task, without retries, when the report holds anything to act on.

    Retrying cannot bring back an object absent past the horizon or mend a damaged one, so
    the task fails for good at once and its alert carries the whole list.

    :raises AirflowFailException: with the text of ``problems(report)``.
    """
    text = problems(report)
    if text:
        raise AirflowFailException(text)


def _hour_runs(pairs: list[list[str]]) -> list[tuple[str, str]]:
    """Group ``[table, window_start]`` pairs into runs of consecutive hours with the same tables."""
    tables_by_hour: dict[datetime, set[str]] = {}
    for table, window_start in pairs:
        tables_by_hour.setdefault(datetime.fromisoformat(window_start), set()).add(table)
    runs: list[tuple[str, str]] = []
    run: list[datetime] = []
    for hour in sorted(tables_by_hour):
        if run and (hour - run[-1] != WINDOW or tables_by_hour[hour] != tables_by_hour[run[-1]]):
            runs.append(_describe_run(run, tables_by_hour[run[-1]]))
            run = []
        run.append(hour)
    if run:
        runs.append(_describe_run(run, tables_by_hour[run[-1]]))
    return runs


def _describe_run(hours: list[datetime], tables: set[str]) -> tuple[str, str]:
    return ", ".join(
        sorted(tables)
    ), f"{hours[0]:%Y-%m-%d %H:00} .. {hours[-1]:%Y-%m-%d %H:00} UTC ({len(hours)} h)"


def load_windows(
    loader: WindowLoader,
    windows: Sequence[tuple[datetime, Sequence[SourceTable]]],
    now: datetime,
    run_id: str = "",
    try_number: int = 0,
    deadline: float | None = None,
) -> IngestReport:
    """Resolve the given tables of each window, in order, until ``deadline`` (monotonic) passes.

    Each present object is loaded and committed on its own (``WindowLoader.load``); absent
    objects of windows past the lateness horizon are recorded together at the end. A load
    that fails for any other reason is on record (``rejected`` for a damaged object, else
    ``failed``), listed in the report, and the next one goes on: one bad window never holds
    back the others. Only when several windows in a row failed entirely does the batch stop,
    since then the warehouse or the bucket is at fault. What exists is found by listing each
    day's prefix once.

    :raises SourceObjectLate: an object is absent while its window is within the horizon.
    """
    settings = loader.settings
    template = settings.source.key_template
    # Before the first listing: a load committed from here on found an object this batch may
    # have seen absent, and recording that absence must not replace it.
    listed_since = clock.warehouse_now(loader.hook)
    listed: dict[str, set[str]] = {}
    report = IngestReport()
    absent: list[tuple[SourceTable, datetime]] = []
    fully_absent: list[datetime] = []
    failed_windows_in_a_row = 0
    for window_start, tables in windows:
        if deadline is not None and report.windows and time.monotonic() >= deadline:
            break
        if failed_windows_in_a_row >= _FAILED_WINDOWS_THAT_STOP_A_BATCH:
            report.stopped_early = (
                f"the batch stopped after {failed_windows_in_a_row} windows in a row failed to load: "
                "look at the warehouse and the bucket first"
            )
            log.error(report.stopped_early)
            break
        started = time.monotonic()
        prefix = day_prefix(template, window_start)
        if prefix not in listed:
            listed[prefix] = loader.bucket.keys_under(prefix)
        absent_here = failed_here = 0
        for table in tables:
            key = object_key(template, window_start, table.name)
            if key in listed[prefix]:
                try:
                    result = loader.load(table, window_start, run_id, try_number)
                except SourceFormatError as error:
                    report.rejected_objects += 1
                    if len(report.rejected) < _LISTED:
                        report.rejected.append([table.name, window_start.isoformat(), str(error)])
                    continue
                except SourceObjectMissing:
                    pass  # deleted since the listing: absent after all
                except Exception as error:  # on record as 'failed' (WindowLoader.load); the batch goes on
                    log.warning(
                        "Load of %s window %s failed: %s", table.name, window_start.isoformat(), error
                    )
                    failed_here += 1
                    report.failed_objects += 1
                    if len(report.failed) < _LISTED:
                        reason = f"{type(error).__name__}: {error}"
                        report.failed.append([table.name, window_start.isoformat(), reason])
                    continue
                else:
                    report.committed += 1
                    report.rows += result.rows
                    continue
            if not window_is_past_horizon(settings, window_start, now):
                raise SourceObjectLate(
                    f"s3://{loader.bucket.bucket}/{key}: absent, and its window ends within the "
                    f"lateness horizon ({settings.source.lateness_horizon_seconds} s): try again later"
                )
            absent.append((table, window_start))
            absent_here += 1
        failed_windows_in_a_row = failed_windows_in_a_row + 1 if failed_here == len(tables) else 0
        elapsed = time.monotonic() - started
        if absent_here == len(tables):
            fully_absent.append(window_start)
            report.absent_seconds += elapsed
        else:
            report.data_windows += 1
            report.data_seconds += elapsed
        report.windows += 1
        stamp = window_start.isoformat()
        report.first_window = min(report.first_window or stamp, stamp)
        report.last_window = max(report.last_window, stamp)
    if absent:
        started = time.monotonic()
        report.absent_status, absent = loader.record_absent(absent, now, run_id, try_number, listed_since)
        runs = _hour_runs([[table.name, window_start.isoformat()] for table, window_start in absent])
        report.absent_objects = len(absent)
        report.absent_runs = [list(run) for run in runs[:_LISTED]]
        report.absent_runs_total = len(runs)
        report.absent_seconds += time.monotonic() - started
        if report.absent_status == "skipped":
            report.committed += len(absent)
    report.absent_windows = len(fully_absent)
    return report


def source_bucket(settings: Settings) -> SourceBucket:
    return SourceBucket(settings.source.conn_id, settings.source.bucket)


def find_orphaned_loads(
    hook: ClickHouseHook,
    settings: Settings,
    table: SourceTable,
    from_window: str = _ALL_WINDOWS["from_window"],
    to_window: str = _ALL_WINDOWS["to_window"],
    older_than: timedelta | None = None,
) -> list[tuple[str, str, int]]:
    """Return the loads of ``table`` in [from_window, to_window] whose staged rows no reader will see.

    Those are loads that finished (any status but ``started``) without being the window's
    committed load, and loads that started more than ``older_than`` ago and never finished:
    past its deadline a load no longer commits. Only loads that still have rows are listed.

    :param older_than: at least ``ingest.load_deadline_seconds``; default twice that, which
        leaves room for clocks of different workers that disagree.
    :return: (window_start, load_id, rows) of each such load.
    """
    deadline = timedelta(seconds=settings.ingest.load_deadline_seconds)
    older_than = 2 * deadline if older_than is None else older_than
    if older_than < deadline:
        raise ValueError(
            f"older_than {older_than} is shorter than ingest.load_deadline_seconds ({deadline}): "
            "the rows of loads still in flight could be deleted"
        )
    rows = hook.run(
        "select_orphaned_loads",
        {
            "database": settings.warehouse.database,
            "loads_table": table.loads_table,
            "table_name": table.name,
            "from_window": from_window,
            "to_window": to_window,
            "started_before": (clock.now() - older_than).strftime(_MICROSECOND),
        },
    )
    return [(window, load_id, int(count)) for window, load_id, count in rows]


def delete_loads(hook: ClickHouseHook, settings: Settings, table: SourceTable, loads: list[tuple]) -> None:
    """Delete the staged rows of ``loads`` ((window_start, load_id, ...) each) from ``table``'s loads table.

    Does nothing for an empty list: a DELETE is a mutation that visits the table's parts
    even when it matches nothing.
    """
    if not loads:
        return
    hook.run(
        "delete_orphaned_loads",
        {
            "database": settings.warehouse.database,
            "loads_table": table.loads_table,
            "windows": json.dumps(sorted({window for window, *_ in loads})),
            "load_ids": json.dumps([load_id for _, load_id, *_ in loads]),
        },
    )
    log.info("Deleted the staged rows of %d orphaned load(s) of %s", len(loads), table.name)


def sweep_orphaned_loads(
    hook: ClickHouseHook, settings: Settings, older_than: timedelta | None = None
) -> dict[str, int]:
    """Delete, in every window of every table, the staged rows no reader will see again.

    Safe while other loads run: a load still within its deadline is never touched. Costs one
    SELECT per table (ingest_log and the loads tables' primary keys) when there is nothing
    to delete, and one DELETE per table that has something. The catch-up runs it once per
    batch (``catchup.catch_up``, at least hourly); the next load of a window also cleans
    that window.

    :param older_than: see ``find_orphaned_loads``.
    :return: rows deleted per table.
    """
    deleted = {}
    for table in settings.tables:
        orphans = find_orphaned_loads(hook, settings, table, older_than=older_than)
        delete_loads(hook, settings, table, orphans)
        deleted[table.name] = sum(rows for _, _, rows in orphans)
    return deleted


def ingest_window(settings: Settings, window_start: datetime, run_id: str = "", try_number: int = 0) -> dict:
    """Load every table of one window (the live run's task body); return the IngestReport.

    :raises SourceObjectLate: an object is absent and the window is still recent.
    :raises WindowLoadFailed: a load failed for a reason other than a damaged object, after
        the other tables of the window were loaded; a retry loads the window again.
    """
    now = clock.now()
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        report = load_windows(loader, [(window_start, settings.tables)], now, run_id, try_number)
    if report.failed_objects:
        # The live hour has its own run: Airflow's retries try the window again soon.
        raise WindowLoadFailed(problems(report.to_dict()))
    return report.to_dict()
