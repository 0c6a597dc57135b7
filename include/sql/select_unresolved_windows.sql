-- Windows in [window_from, window_to) with tables (a JSON array of names) that have no final
-- row in the ingest log, newest first, each with those tables. Final: 'loaded' or 'skipped'
-- (committed), 'missing' (absent past the lateness horizon) or 'rejected' (a bad object, kept
-- until it changes or an operator reloads the window), unless a newer 'stale' row (a bucket
-- re-check found the object late or changed) sends the window back to be loaded again.
-- A 'failed' or merely 'started' attempt is not final:
-- the window is tried again, but a table whose window failed n times waits
-- {retry_seconds} * 2^(n-1) (at most {max_retry_seconds}) after its last failure, measured
-- at {now} on the warehouse's clock, so one window that keeps failing costs a batch an
-- attempt now and then, never all of its time.
WITH
    {window_from:DateTime('UTC')} AS first_window,
    {window_to:DateTime('UTC')} AS end_window
SELECT toString(window_start), groupArray(table_name)
FROM
(
    SELECT
        first_window + toIntervalHour(number) AS window_start,
        arrayJoin(JSONExtract({tables:String}, 'Array(String)')) AS table_name
    FROM numbers(toUInt64(greatest(0, dateDiff('hour', first_window, end_window))))
)
WHERE (table_name, window_start) NOT IN (
    SELECT table_name, window_start
    FROM {database:Identifier}.ingest_log
    WHERE status IN ('loaded', 'skipped', 'missing', 'rejected', 'stale')
      AND window_start >= first_window
      AND window_start < end_window
    GROUP BY table_name, window_start
    HAVING argMax(status, finished_at) != 'stale'
)
AND (table_name, window_start) NOT IN (
    SELECT table_name, window_start
    FROM {database:Identifier}.ingest_log
    WHERE status = 'failed'
      AND window_start >= first_window
      AND window_start < end_window
    GROUP BY table_name, window_start
    HAVING max(finished_at) + toIntervalSecond(
        least({max_retry_seconds:UInt64}, {retry_seconds:UInt64} * intExp2(least(count() - 1, 40)))
    ) > {now:DateTime64(6, 'UTC')}
)
GROUP BY window_start
ORDER BY window_start DESC;
