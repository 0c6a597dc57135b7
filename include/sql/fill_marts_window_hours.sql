-- Index the event hours of the browser_events loads among the refresh's claimed commits:
-- one row per hour of each load's event-time span and its window. Read by primary key.
INSERT INTO {database:Identifier}.marts_window_hours (hour, window_start)
SELECT
    toDateTime(
        arrayJoin(range(toUInt32(toStartOfHour(min_event_time)), toUInt32(toStartOfHour(max_event_time)) + 3600, 3600)),
        'UTC'
    ),
    window_start
FROM {database:Identifier}.ingest_log
WHERE table_name = 'browser_events'
  AND window_start IN (SELECT window_start FROM {database:Identifier}.{claimed:Identifier})
  AND load_id IN (SELECT load_id FROM {database:Identifier}.{claimed:Identifier})
  AND status = 'loaded'
  AND rows > 0;
