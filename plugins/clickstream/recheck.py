"""Following the bucket: objects that arrive late, change or disappear after their window resolved.

An upstream that is down for hours writes its objects late; one that corrects a day
re-delivers them with new content. Before each catch-up batch, the last
``source.recheck_days`` of history are compared with the ingest log: one listing per day
prefix (the ETags come with it, nothing is downloaded) and one query. What it finds is put
on record in ``ingest_log``, in one INSERT:

* an object present for a window recorded ``missing`` or ``skipped`` arrived late;
* an object whose ETag differs from its window's committed load, or from a ``rejected``
  attempt's, changed;

  either way the window's table gets a ``stale`` row saying why, which makes it unresolved
  again (``select_unresolved_windows.sql``), so the batch that follows loads it as any other
  window: atomically, the marts following through their queue. Until then readers keep what
  the window showed;
* the object of a loaded window that is gone is reported once (a ``source_deleted`` row):
  the window keeps its rows, since an upstream that deletes by mistake must not empty the
  warehouse. An operator who wants it empty reloads it with ``absent_object_outcome = skip``.

Windows older than the look-back are an operator's to reload, as before.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from clickstream.config import Settings
from clickstream.loading import WINDOW, parse_window_start
from clickstream.source import SourceBucket, day_prefix, object_key
from clickstream.warehouse import ClickHouseHook

log = logging.getLogger(__name__)

STALE = "stale"
SOURCE_DELETED = "source_deleted"
_SECOND = "%Y-%m-%d %H:%M:%S"
_LISTED = 20


@dataclass
class RecheckReport:
    """What one re-check found; JSON-serialisable, bounded in size whatever it found."""

    window_from: str = ""
    window_to: str = ""
    list_calls: int = 0
    late: int = 0
    changed: int = 0
    deleted: int = 0
    found: list[list[str]] = field(default_factory=list)  # [table, window_start, reason]

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self) -> str:
        """One message for the operator, or '' when the bucket holds nothing new."""
        if not (self.late or self.changed or self.deleted):
            return ""
        lines = [
            f"Bucket re-check of {self.window_from} .. {self.window_to}: {self.late} late object(s) "
            f"arrived and {self.changed} changed, loading them now; {self.deleted} deleted "
            "(their windows keep their rows)"
        ]
        lines.extend(f"  {table} {window_start}: {reason}" for table, window_start, reason in self.found)
        unlisted = self.late + self.changed + self.deleted - len(self.found)
        if unlisted > 0:
            lines.append(f"  ... and {unlisted} more: see ingest_log, status 'stale' and 'source_deleted'")
        return "\n".join(lines)


def recheck_window_range(settings: Settings, history_end: datetime) -> tuple[datetime, datetime]:
    """Return the windows ``[from, history_end)`` a re-check covers: the last ``recheck_days``."""
    first = history_end - timedelta(days=settings.source.recheck_days)
    return max(settings.start_date, first), history_end


def recheck_bucket(
    hook: ClickHouseHook,
    bucket: SourceBucket,
    settings: Settings,
    history_end: datetime,
    run_id: str = "",
    try_number: int = 0,
) -> RecheckReport:
    """Compare the bucket with the ingest log over the look-back; record what changed.

    :param history_end: the end of the history the catch-up owns (newer windows are the live
        DAG's, which waits for their objects anyway).
    """
    window_from, window_to = recheck_window_range(settings, history_end)
    report = RecheckReport(window_from=window_from.isoformat(), window_to=window_to.isoformat())
    if window_from >= window_to:
        return report
    template = settings.source.key_template
    listed: dict[str, str] = {}
    day = window_from
    while day < window_to:
        etags, calls = bucket.etags_under(day_prefix(template, day))
        listed.update(etags)
        report.list_calls += calls
        day = (day + timedelta(days=1)).replace(hour=0)
    state = hook.run(
        "select_recheck_state",
        {
            "database": settings.warehouse.database,
            "window_from": window_from.strftime(_SECOND),
            "window_to": window_to.strftime(_SECOND),
        },
    )
    rows = []
    for table_name, window_text, status, known_etag in state:
        if table_name not in settings.table_names:
            continue
        window_start = parse_window_start(window_text)
        key = object_key(template, window_start, table_name)
        found = _what_changed(status, known_etag, listed.get(key))
        if found is None:
            continue
        new_status, reason = found
        if new_status == SOURCE_DELETED:
            report.deleted += 1
        elif status in ("missing", "skipped"):
            report.late += 1
        else:
            report.changed += 1
        if len(report.found) < _LISTED:
            report.found.append([table_name, window_start.isoformat(), reason])
        etag = listed.get(key, known_etag)
        rows.append(
            [str(uuid.uuid4()), table_name, window_start.strftime(_SECOND), key, etag, new_status, reason]
        )
    if rows:
        hook.run(
            "insert_ingest_log_recheck",
            {
                "database": settings.warehouse.database,
                "source_bucket": bucket.bucket,
                "found": json.dumps(rows),
                "dag_run_id": run_id,
                "try_number": try_number,
            },
        )
        log.warning(report.message())
    log.info(
        "Re-checked %d window(s) of the bucket with %d LIST call(s): %d late, %d changed, %d deleted",
        int((window_to - window_from) / WINDOW),
        report.list_calls,
        report.late,
        report.changed,
        report.deleted,
    )
    return report


def _what_changed(status: str, known_etag: str, listed_etag: str | None) -> tuple[str, str] | None:
    """Return the row a re-check records for one object, ``(status, reason)``, or None."""
    if status in ("missing", "skipped"):
        if listed_etag is not None:
            return STALE, f"source arrived late (the window was {status})"
        return None
    if status in ("loaded", "rejected", SOURCE_DELETED):
        if listed_etag is None:
            return (
                (SOURCE_DELETED, "source deleted; the window keeps its rows") if status == "loaded" else None
            )
        if listed_etag != known_etag and known_etag:
            was = "loaded" if status == SOURCE_DELETED else status
            return STALE, f"source changed since it was {was} (ETag {known_etag} -> {listed_etag})"
    return None
