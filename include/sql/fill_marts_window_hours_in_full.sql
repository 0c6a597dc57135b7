-- For a full rebuild, into the emptied index: the event hours of every browser_events load
-- of ingest_log, one row per hour of each load's event-time span and its window. Only
-- refreshes read the index and they never overlap, so emptying it first hides nothing.
USE {database:Identifier};

TRUNCATE TABLE marts_window_hours;

INSERT INTO marts_window_hours (hour, window_start)
SELECT
    toDateTime(
        arrayJoin(range(toUInt32(toStartOfHour(min_event_time)), toUInt32(toStartOfHour(max_event_time)) + 3600, 3600)),
        'UTC'
    ),
    window_start
FROM ingest_log
WHERE table_name = 'browser_events' AND status = 'loaded' AND rows > 0;
