-- For a full rebuild: the event hours [first_hour, last_hour] of every window's committed
-- browser_events load that holds rows. Their union is every hour with an event.
SELECT toString(toStartOfHour(min_event_time)), toString(toStartOfHour(max_event_time))
FROM {database:Identifier}.committed_loads
WHERE table_name = 'browser_events' AND status = 'loaded' AND rows > 0
ORDER BY window_start;
