-- Index the event hours of the browser_events loads among the refresh's claimed commits:
-- one row per hour of each load's event-time span and its window. Read by primary key.
-- Event times are clamped to the window's tolerance band ({tolerance_hours} either side):
-- loads record the range of in-window events only, but rows written before that rule may
-- hold a stray stamp (1970), which must not widen what a refresh recomputes.
INSERT INTO {database:Identifier}.marts_window_hours (hour, window_start)
SELECT
    toDateTime(
        arrayJoin(range(
            toUInt32(toStartOfHour(greatest(min_event_time, window_start - toIntervalHour({tolerance_hours:UInt32})))),
            toUInt32(toStartOfHour(least(max_event_time, window_start + toIntervalHour({tolerance_hours:UInt32})))) + 3600,
            3600
        )),
        'UTC'
    ),
    window_start
FROM {database:Identifier}.ingest_log
WHERE table_name = 'browser_events'
  AND window_start IN (SELECT window_start FROM {database:Identifier}.{claimed:Identifier})
  AND load_id IN (SELECT load_id FROM {database:Identifier}.{claimed:Identifier})
  AND status = 'loaded'
  AND rows > 0
  AND min_event_time IS NOT NULL;
