-- For a full rebuild: the event hours of every browser_events load of ingest_log, one row
-- per hour of each load's event-time span and its window. Added to what the index holds,
-- never emptied first: another refresh may be reading it (a superset costs a read of a
-- window, never a wrong result; a truncate empties it).
USE {database:Identifier};

INSERT INTO marts_window_hours (hour, window_start)
SELECT
    toDateTime(
        arrayJoin(range(toUInt32(toStartOfHour(min_event_time)), toUInt32(toStartOfHour(max_event_time)) + 3600, 3600)),
        'UTC'
    ),
    window_start
FROM ingest_log
WHERE table_name = 'browser_events' AND status = 'loaded' AND rows > 0;
