"""The bundle's wall clock, in one place so that a test sets it for the code it runs.

Every decision that depends on the time of day asks ``now()``: whether a window is past its
lateness horizon, where the catch-up's history ends, whether the live sensor waits. Elapsed
time (deadlines, durations) is measured with the monotonic clock instead, which no decision
compares with a date. Stamps in the ingest log are the warehouse's own (they order commits
whatever the workers' clocks say), so what is compared with them asks ``warehouse_now()``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Return the current time in UTC (aware)."""
    return datetime.now(UTC)


def warehouse_now(hook) -> str:
    """Return the warehouse's clock (UTC, microseconds, as text), which stamps ingest_log rows."""
    return hook.run("select_warehouse_now")[0][0]
