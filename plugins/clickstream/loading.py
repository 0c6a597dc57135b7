"""Loading one hour of one source table into the warehouse, atomically and idempotently.

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
from clickstream.source import (
    SourceBucket,
    SourceFormatError,
    SourceObjectMissing,
    member_name,
    object_key,
    verify_member,
)
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=1)
_SECOND = "%Y-%m-%d %H:%M:%S"
_MICROSECOND = "%Y-%m-%d %H:%M:%S.%f"


class WindowError(ValueError):
    """The run does not say which hour to load."""


class WarehouseRejectedObject(RuntimeError):
    """ClickHouse refused an object that the reference reader accepts; names the object."""


class LoadDeadlineExceeded(RuntimeError):
    """A load ran past ``ingest.load_deadline_seconds`` and did not commit; names the object."""


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


# The widest range of DateTime, for a sweep over every window.
_ALL_WINDOWS = {"from_window": "1970-01-01 00:00:00", "to_window": "2106-02-07 06:28:15"}


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
        :raises SourceFormatError: the object is not a ZIP with the table's JSON lines, or a
            member is damaged; the message names bucket, key and (where one is at fault)
            line. The window keeps its previous content.
        :raises LoadDeadlineExceeded: the load took longer than its deadline; nothing changed.
        """
        key = object_key(self.settings.source.key_template, window_start, table.name)
        attempt = _Attempt(table, window_start, key, run_id, try_number)
        # On record before anything is staged: an attempt killed from here on leaves this row.
        self._log(attempt, status="started")
        try:
            try:
                result = self._stage_and_commit(attempt)
            except SourceObjectMissing as missing:
                if self.settings.source.missing_object_policy != "skip":
                    raise
                log.warning("%s; policy 'skip' commits an empty window", missing)
                result = self._commit(attempt, status="skipped", rows=0)
        except Exception as error:
            self._record_failure(attempt, error)
            raise
        self._delete_orphans(attempt)
        return result

    def _delete_orphans(self, attempt: _Attempt) -> None:
        """Delete the rows of the window's loads that no reader will see again, if there are any."""
        window = attempt.window_start.strftime(_SECOND)
        orphans = find_orphaned_loads(
            self.hook, self.settings, attempt.table, from_window=window, to_window=window
        )
        delete_loads(self.hook, self.settings, attempt.table, orphans)

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
            attempt.staging_started = True
            try:
                self.hook.load_json_lines(target, table, fetched.member_path, metadata)
            except Exception as engine_error:
                # The engine's message points at a row of a parallel parser. A damaged member
                # is named first (with the line where its data stops decoding, or its CRC);
                # then the reference reader names the exact line and key at fault.
                verify_member(fetched.archive_path, fetched.member, self.bucket.bucket, attempt.key)
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
        if attempt.commit_sent:
            # The commit may have landed before its reply was lost: the rows may be the
            # window's content now. The next load or sweep removes them only if they are not.
            return
        if attempt.staging_started:
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
        # The started row is written at the start: its finished_at is its started_at.
        finished = attempt.started_at if status == "started" else datetime.now(UTC)
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
        self.staging_started = False
        self.commit_sent = False

    def target(self, settings: Settings) -> dict:
        return {
            "database": settings.warehouse.database,
            "loads_table": self.table.loads_table,
            "window_start": self.window_start.strftime(_SECOND),
            "load_id": self.load_id,
        }


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
            "started_before": (datetime.now(UTC) - older_than).strftime(_MICROSECOND),
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
    to delete, and one DELETE per table that has something. The ingest runs it once per run
    (``create_tables``); the next load of a window also cleans that window.

    :param older_than: see ``find_orphaned_loads``.
    :return: rows deleted per table.
    """
    deleted = {}
    for table in settings.tables:
        orphans = find_orphaned_loads(hook, settings, table, older_than=older_than)
        delete_loads(hook, settings, table, orphans)
        deleted[table.name] = sum(rows for _, _, rows in orphans)
    return deleted


def create_tables(settings: Settings) -> None:
    """Create whatever the raw layer lacks in the warehouse of ``settings``, then sweep orphans."""
    with ClickHouseHook(settings.warehouse.conn_id) as hook:
        ensure_schema(hook, settings)
        sweep_orphaned_loads(hook, settings)


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
