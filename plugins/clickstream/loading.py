"""Loading hours of the source tables into the warehouse, atomically and idempotently.

A load appends the object's rows to ``<table>_loads`` under a fresh ``load_id``; nobody
sees them yet, because the view ``<table>`` shows a window only from the load whose commit
row in ``ingest_log`` is the newest. The commit is one single-row INSERT, which ClickHouse
applies atomically, so a reader sees the window's previous content or its new content,
never a mix. Loads of different windows, or of the same window, never write the same rows,
so they can run concurrently even inside one partition: nothing is read-modified-written.
Rows of superseded and failed loads are deleted afterwards; that only saves space.

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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from airflow.sdk.exceptions import AirflowFailException

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
)
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
# Bounded parameter size for the one INSERT that records absent objects.
_ABSENT_ROWS_PER_INSERT = 1000
# Rejected objects named one by one in a problem report; the rest are counted.
_REJECTED_LISTED = 20
_SECOND = "%Y-%m-%d %H:%M:%S"
_MICROSECOND = "%Y-%m-%d %H:%M:%S.%f"


class WindowError(ValueError):
    """The run does not say which hour to load."""


class WarehouseRejectedObject(RuntimeError):
    """ClickHouse refused an object that the reference reader accepts; names the object."""


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

    def to_dict(self) -> dict:
        return asdict(self)


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


def ensure_schema(hook: ClickHouseHook, settings: Settings) -> None:
    """Create the database, the ingest log and every source table that does not exist yet."""
    database = {"database": settings.warehouse.database}
    hook.run("create_database", database)
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

        :raises SourceObjectMissing: the object is absent; nothing is recorded (see ``record_absent``).
        :raises SourceFormatError: the object is not a ZIP with the table's JSON lines; the
            message names bucket, key and line. The window keeps its previous content.
        """
        key = object_key(self.settings.source.key_template, window_start, table.name)
        attempt = _Attempt(table, window_start, key, run_id, try_number)
        try:
            result = self._stage_and_commit(attempt)
        except SourceObjectMissing:
            # Absence is no failed attempt: the caller knows whether the window is still
            # within the lateness horizon, and records it with record_absent() once it is not.
            raise
        except Exception as error:
            self._record_failure(attempt, error)
            raise
        self._delete_superseded(table, [window_start])
        return result

    def record_absent(
        self,
        absent: Sequence[tuple[SourceTable, datetime]],
        now: datetime,
        run_id: str = "",
        try_number: int = 0,
    ) -> str:
        """Record objects absent past the lateness horizon, all in one INSERT; return the status.

        Outcome ``fail`` writes a ``missing`` row per object; ``skip`` commits each window
        empty for its table (``skipped``), replacing what the window showed before.
        """
        status = "skipped" if self.settings.source.absent_object_outcome == "skip" else "missing"
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
                    # The commit order of the ingest log is wall-clock order, whatever ``now``
                    # the lateness was judged against.
                    "recorded_at": datetime.now(UTC).strftime(_MICROSECOND),
                    "dag_run_id": run_id,
                    "try_number": try_number,
                },
            )
        if status == "skipped":
            windows_by_table: dict[str, list[datetime]] = {}
            for table, window_start in absent:
                windows_by_table.setdefault(table.name, []).append(window_start)
            for name, windows in windows_by_table.items():
                self._delete_superseded(self.settings.table(name), windows)
        log.warning("%d object(s) absent past the lateness horizon, recorded as %s", len(rows), status)
        return status

    def _delete_superseded(self, table: SourceTable, windows: Sequence[datetime]) -> None:
        # A DELETE is a mutation that visits the windows' parts even when it matches nothing,
        # so it only runs when an earlier load of a window is actually hidden.
        target = {
            "database": self.settings.warehouse.database,
            "loads_table": table.loads_table,
            "table_name": table.name,
            "windows": json.dumps([window.strftime(_SECOND) for window in windows]),
        }
        superseded = [load_id for (load_id,) in self.hook.run("select_superseded_loads", target)]
        if superseded:
            self.hook.run("delete_superseded_loads", {**target, "load_ids": json.dumps(superseded)})
            log.info("Deleted the rows of %d superseded load(s) of %s", len(superseded), table.name)

    def _stage_and_commit(self, attempt: _Attempt) -> LoadResult:
        table = attempt.table
        target = attempt.target(self.settings)
        with self.bucket.fetch_member(attempt.key, member_name(table.name)) as fetched:
            attempt.source_etag, attempt.source_bytes = fetched.etag, fetched.size_bytes
            metadata = {
                "window_start": attempt.window_start.strftime(_SECOND),
                "load_id": attempt.load_id,
                "source_key": attempt.key,
                "source_etag": fetched.etag,
                "loaded_at": datetime.now(UTC).strftime(_MICROSECOND),
            }
            try:
                self.hook.load_json_lines(target, table, fetched.member_path, metadata)
            except Exception as engine_error:
                # The engine's message points at a row of a parallel parser; the reference
                # reader names the exact line and key, and confirms the file is at fault.
                located = RecordReader(table).first_error(fetched.member_path)
                if located is not None:
                    raise SourceFormatError(
                        self.bucket.bucket, attempt.key, located.reason, located.line
                    ) from None
                raise WarehouseRejectedObject(
                    f"s3://{self.bucket.bucket}/{attempt.key}: ClickHouse rejected the object: {engine_error}"
                ) from engine_error
        rows, min_time, max_time = self.hook.run(
            "select_load_stats", {**target, "time_column": table.event_time_column or "window_start"}
        )[0]
        if table.event_time_column is None:
            min_time = max_time = ""
        return self._commit(attempt, status="loaded", rows=int(rows), min_time=min_time, max_time=max_time)

    def _commit(
        self, attempt: _Attempt, status: str, rows: int, min_time: str = "", max_time: str = ""
    ) -> LoadResult:
        self._log(attempt, status=status, rows=rows, min_time=min_time, max_time=max_time)
        result = LoadResult(
            table=attempt.table.name,
            window_start=attempt.window_start.isoformat(),
            load_id=attempt.load_id,
            status=status,
            rows=rows,
            source_key=attempt.key,
            source_etag=attempt.source_etag,
            source_bytes=attempt.source_bytes,
            min_event_time=min_time,
            max_event_time=max_time,
        )
        log.info(
            "Committed %s window %s: %s, %d rows from s3://%s/%s",
            result.table,
            result.window_start,
            status,
            rows,
            self.bucket.bucket,
            attempt.key,
        )
        return result

    def _record_failure(self, attempt: _Attempt, error: Exception) -> None:
        # A rejected object stays rejected until it changes: the catch-up does not retry it.
        # Any other failure (network, warehouse) leaves the window to be tried again.
        status = "rejected" if isinstance(error, SourceFormatError) else "failed"
        self._log(attempt, status=status, error=f"{type(error).__name__}: {error}")
        self.hook.run("delete_load_rows", attempt.target(self.settings))

    def _log(
        self,
        attempt: _Attempt,
        status: str,
        rows: int = 0,
        min_time: str = "",
        max_time: str = "",
        error: str = "",
    ) -> None:
        finished = datetime.now(UTC)
        self.hook.run(
            "insert_ingest_log",
            {
                "database": self.settings.warehouse.database,
                "load_id": attempt.load_id,
                "table_name": attempt.table.name,
                "window_start": attempt.window_start.strftime(_SECOND),
                "status": status,
                "source_bucket": self.bucket.bucket,
                "source_key": attempt.key,
                "source_etag": attempt.source_etag,
                "source_bytes": attempt.source_bytes,
                "rows": rows,
                "min_event_time": min_time,
                "max_event_time": max_time,
                "started_at": attempt.started_at.strftime(_MICROSECOND),
                "finished_at": finished.strftime(_MICROSECOND),
                "duration_ms": int((time.monotonic() - attempt.started_monotonic) * 1000),
                "error": error,
                "dag_run_id": attempt.run_id,
                "try_number": attempt.try_number,
            },
        )


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
    least one object and windows whose objects were all absent (listing included).
    """

    windows: int = 0
    first_window: str = ""
    last_window: str = ""
    committed: int = 0
    rows: int = 0
    absent: list[list[str]] = field(default_factory=list)
    absent_status: str = ""
    rejected: list[list[str]] = field(default_factory=list)
    remaining: int = 0
    data_windows: int = 0
    data_seconds: float = 0.0
    absent_windows: int = 0
    absent_seconds: float = 0.0

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
    if report["absent"] and report["absent_status"] == "missing":
        lines.append(f"{len(report['absent'])} object(s) absent past the lateness horizon (status missing):")
        lines.extend(f"  {span}: {tables}" for tables, span in _hour_runs(report["absent"]))
    for table, window_start, error in report["rejected"][:_REJECTED_LISTED]:
        lines.append(f"rejected {table} {window_start}: {error.splitlines()[0] if error else ''}")
    if len(report["rejected"]) > _REJECTED_LISTED:
        lines.append(f"... and {len(report['rejected']) - _REJECTED_LISTED} more rejected object(s)")
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
    objects of windows past the lateness horizon are recorded together at the end; a rejected
    object is recorded and the next one goes on. What exists is found by listing each day's
    prefix once.

    :raises SourceObjectLate: an object is absent while its window is within the horizon.
    """
    settings = loader.settings
    template = settings.source.key_template
    listed: dict[str, set[str]] = {}
    report = IngestReport()
    absent: list[tuple[SourceTable, datetime]] = []
    fully_absent: list[datetime] = []
    for window_start, tables in windows:
        if deadline is not None and report.windows and time.monotonic() >= deadline:
            break
        started = time.monotonic()
        prefix = day_prefix(template, window_start)
        if prefix not in listed:
            listed[prefix] = loader.bucket.keys_under(prefix)
        absent_here = 0
        for table in tables:
            key = object_key(template, window_start, table.name)
            if key in listed[prefix]:
                try:
                    result = loader.load(table, window_start, run_id, try_number)
                except SourceFormatError as error:
                    report.rejected.append([table.name, window_start.isoformat(), str(error)])
                    continue
                except SourceObjectMissing:
                    pass  # deleted since the listing: absent after all
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
        report.absent_status = loader.record_absent(absent, now, run_id, try_number)
        report.absent = [[table.name, window_start.isoformat()] for table, window_start in absent]
        report.absent_seconds += time.monotonic() - started
        if report.absent_status == "skipped":
            report.committed += len(absent)
    report.absent_windows = len(fully_absent)
    return report


def source_bucket(settings: Settings) -> SourceBucket:
    return SourceBucket(settings.source.conn_id, settings.source.bucket)


def ingest_window(settings: Settings, window_start: datetime, run_id: str = "", try_number: int = 0) -> dict:
    """Load every table of one window (the live run's task body); return the IngestReport.

    :raises SourceObjectLate: an object is absent and the window is still recent.
    """
    now = datetime.now(UTC)
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        report = load_windows(loader, [(window_start, settings.tables)], now, run_id, try_number)
    return report.to_dict()
