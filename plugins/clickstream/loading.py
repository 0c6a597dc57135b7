"""Loading one hour of one source table into the warehouse, atomically and idempotently.

A load appends the object's rows to ``<table>_loads`` under a fresh ``load_id``; nobody
sees them yet, because the view ``<table>`` shows a window only from the load whose commit
row in ``ingest_log`` is the newest. The commit is one single-row INSERT, which ClickHouse
applies atomically, so a reader sees the window's previous content or its new content,
never a mix. Loads of different windows, or of the same window, never write the same rows,
so they can run concurrently even inside one partition: nothing is read-modified-written.
Rows of superseded and failed loads are deleted afterwards; that only saves space.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from clickstream.config import Settings, SourceTable, utc_hour
from clickstream.records import RecordReader
from clickstream.source import SourceBucket, SourceFormatError, SourceObjectMissing, member_name, object_key
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
_SECOND = "%Y-%m-%d %H:%M:%S"
_MICROSECOND = "%Y-%m-%d %H:%M:%S.%f"


class WindowError(ValueError):
    """The run does not say which hour to load."""


class WarehouseRejectedObject(RuntimeError):
    """ClickHouse refused an object that the reference reader accepts; names the object."""


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
    :param settings: the bundle's settings (database, layout, missing-object policy).
    """

    def __init__(self, hook: ClickHouseHook, bucket: SourceBucket, settings: Settings):
        self.hook = hook
        self.bucket = bucket
        self.settings = settings

    def load(
        self, table: SourceTable, window_start: datetime, run_id: str = "", try_number: int = 0
    ) -> LoadResult:
        """Replace ``table``'s content for the hour at ``window_start`` with its source object.

        :raises SourceObjectMissing: the object is absent and the policy is not ``skip``.
        :raises SourceFormatError: the object is not a ZIP with the table's JSON lines; the
            message names bucket, key and line. The window keeps its previous content.
        """
        key = object_key(self.settings.source.key_template, window_start, table.name)
        attempt = _Attempt(table, window_start, key, run_id, try_number)
        try:
            result = self._stage_and_commit(attempt)
        except SourceObjectMissing as missing:
            if self.settings.source.missing_object_policy != "skip":
                self._record_failure(attempt, missing)
                raise
            log.warning("%s; policy 'skip' commits an empty window", missing)
            result = self._commit(attempt, status="skipped", rows=0)
        except Exception as error:
            self._record_failure(attempt, error)
            raise
        self._delete_superseded(attempt)
        return result

    def _delete_superseded(self, attempt: _Attempt) -> None:
        # A DELETE is a mutation that visits the window's parts even when it matches nothing,
        # so it only runs when an earlier load of the window is actually hidden.
        target = {**attempt.target(self.settings), "table_name": attempt.table.name}
        superseded = [load_id for (load_id,) in self.hook.run("select_superseded_loads", target)]
        if superseded:
            self.hook.run("delete_superseded_loads", {**target, "load_ids": json.dumps(superseded)})
            log.info("Deleted the rows of %d superseded load(s) of %s", len(superseded), attempt.table.name)

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
            try:
                self.hook.load_json_lines(target, table, staged, metadata)
            except Exception as engine_error:
                # The engine's message points at a row of a parallel parser; the reference
                # reader names the exact line and key, and confirms the file is at fault.
                located = RecordReader(table).first_error(staged.local_member())
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
        self._log(attempt, status="failed", error=f"{type(error).__name__}: {error}")
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


def source_bucket(settings: Settings) -> SourceBucket:
    return SourceBucket(settings.source.conn_id, settings.source.bucket)


def create_tables(settings: Settings) -> None:
    """Create whatever the raw layer lacks in the warehouse of ``settings``."""
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        ensure_schema(hook, settings)


def object_ready(settings: Settings, table_name: str, window_start: datetime) -> bool:
    """Return whether the load of ``table_name`` for the window may start.

    Only the ``wait`` policy waits for the object; ``fail`` and ``skip`` let the load
    decide what a missing object means.
    """
    if settings.source.missing_object_policy != "wait":
        return True
    key = object_key(settings.source.key_template, window_start, table_name)
    ready = source_bucket(settings).exists(key)
    if not ready:
        log.info("Waiting for s3://%s/%s", settings.source.bucket, key)
    return ready


def load_table_window(
    settings: Settings, table_name: str, window_start: datetime, run_id: str = "", try_number: int = 0
) -> dict:
    """Load one table's window with connections from ``settings``; return the LoadResult as a dict."""
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        loader = WindowLoader(hook, source_bucket(settings), settings)
        return loader.load(settings.table(table_name), window_start, run_id, try_number).to_dict()


def summarize_window(window_start: datetime, results: list[dict]) -> dict:
    """Return the Asset event extra of a window whose tables are all committed."""
    times = [r[k] for r in results for k in ("min_event_time", "max_event_time") if r[k]]
    return {
        "window_start": window_start.isoformat(),
        "window_end": (window_start + WINDOW).isoformat(),
        "min_event_timestamp": min(times) if times else None,
        "max_event_timestamp": max(times) if times else None,
        "rows": {r["table"]: r["rows"] for r in results},
        "statuses": {r["table"]: r["status"] for r in results},
    }
