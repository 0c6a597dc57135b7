-- For a full rebuild: the event hours [first_hour, last_hour] of every window's committed
-- browser_events load that holds rows. Their union is every hour with an event.
-- Event times are clamped to the window's tolerance band ({tolerance_hours} either side):
-- loads record the range of in-window events only, but rows written before that rule may
-- hold a stray stamp (1970), which must not widen what a refresh recomputes.
SELECT
    toString(toStartOfHour(greatest(min_event_time, window_start - toIntervalHour({tolerance_hours:UInt32})))),
    toString(toStartOfHour(least(max_event_time, window_start + toIntervalHour({tolerance_hours:UInt32}))))
FROM {database:Identifier}.committed_loads
WHERE table_name = 'browser_events' AND status = 'loaded' AND rows > 0 AND min_event_time IS NOT NULL
ORDER BY window_start;
