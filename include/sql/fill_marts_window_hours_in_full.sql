-- For a full rebuild: the event hours of every browser_events load of ingest_log, one row
-- per hour of each load's event-time span and its window. Added to what the index holds,
-- never emptied first: another refresh may be reading it (a superset costs a read of a
-- window, never a wrong result; a truncate empties it).
-- Event times are clamped to the window's tolerance band ({tolerance_hours} either side):
-- loads record the range of in-window events only, but rows written before that rule may
-- hold a stray stamp (1970), which must not widen what a refresh recomputes.
USE {database:Identifier};

INSERT INTO marts_window_hours (hour, window_start)
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
FROM ingest_log
WHERE table_name = 'browser_events' AND status = 'loaded' AND rows > 0 AND min_event_time IS NOT NULL;
