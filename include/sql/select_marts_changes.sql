-- The commits of a queue table ({commits}: marts_pending_commits, or a refresh's claimed
-- snapshot of it), each with the event hours its window touches: [first_hour, last_hour]
-- over ALL browser_events loads of that window, older ones included, because a reload that
-- removed rows changes the hours the old rows were in. Event times live on browser_events
-- loads; a device/geo/location commit of a window changes only events of the same window,
-- so it takes that window's browser range. Only loads with rows carry event times: a
-- skipped window (or an empty object) records none. first_hour/last_hour are '' where the
-- window never held browser events (nothing to recompute).
-- Event times are clamped to the window's tolerance band ({tolerance_hours} either side):
-- loads record the range of in-window events only, but rows written before that rule may
-- hold a stray stamp (1970), which must not widen what a refresh recomputes.
-- Bounded: the queue holds only what changed, and ingest_log is read by its primary key
-- (table_name, window_start) for the queued windows only.
WITH spans AS (
    SELECT
        window_start,
        toStartOfHour(min(greatest(min_event_time, window_start - toIntervalHour({tolerance_hours:UInt32})))) AS first_hour,
        toStartOfHour(max(least(max_event_time, window_start + toIntervalHour({tolerance_hours:UInt32})))) AS last_hour,
        1 AS found
    FROM {database:Identifier}.ingest_log
    WHERE table_name = 'browser_events'
      AND window_start IN (SELECT window_start FROM {database:Identifier}.{commits:Identifier})
      AND status = 'loaded'
      AND rows > 0
      -- A load whose rows are all out of window has no event time: it adds no hour.
      AND min_event_time IS NOT NULL
    GROUP BY window_start
)
SELECT
    toString(c.load_id),
    toString(c.table_name),
    toString(c.window_start),
    if(s.found = 1, toString(s.first_hour), ''),
    if(s.found = 1, toString(s.last_hour), '')
FROM {database:Identifier}.{commits:Identifier} AS c
LEFT JOIN spans AS s ON s.window_start = c.window_start
ORDER BY c.window_start, c.table_name, c.load_id;
