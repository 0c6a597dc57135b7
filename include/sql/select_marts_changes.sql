-- Commits (ingest_log rows with status loaded/skipped) the marts do not reflect yet, or all
-- commits when only_pending = 0, each with the event hours its window touches:
-- [first_hour, last_hour] over ALL browser_events commits of that window, older ones
-- included, because a reload that removed rows changes the hours the old rows were in.
-- Event times live on browser_events commits; a device/geo/location commit of a window
-- changes only events of the same window, so it takes that window's browser range.
-- first_hour/last_hour are '' where the window has no browser events (nothing to recompute).
WITH
    commits AS (
        SELECT load_id, table_name, window_start, min_event_time, max_event_time
        FROM {database:Identifier}.ingest_log
        WHERE status IN ('loaded', 'skipped')
    ),
    changed AS (
        SELECT load_id, table_name, window_start
        FROM commits
        WHERE {only_pending:UInt8} = 0
           OR load_id NOT IN (SELECT load_id FROM {database:Identifier}.marts_applied_loads)
    ),
    spans AS (
        SELECT
            window_start,
            toStartOfHour(min(min_event_time)) AS first_hour,
            toStartOfHour(max(max_event_time)) AS last_hour
        FROM commits
        WHERE table_name = 'browser_events'
          AND min_event_time IS NOT NULL
          AND window_start IN (SELECT window_start FROM changed)
        GROUP BY window_start
    )
SELECT
    toString(c.load_id),
    toString(c.table_name),
    toString(c.window_start),
    if(s.window_start = 0, '', toString(s.first_hour)),
    if(s.window_start = 0, '', toString(s.last_hour))
FROM changed AS c
LEFT JOIN spans AS s ON s.window_start = c.window_start
ORDER BY c.window_start, c.table_name, c.load_id;
