-- Rebuild mart_hourly_events for the hour ranges being recomputed and swap it in atomically.
-- mart_hourly_events__next = the current rows outside the ranges (copied: marts are small aggregates,
-- so this costs little next to the raw scan) + the rows recomputed from marts_events_stage;
-- then EXCHANGE TABLES (atomic in an Atomic database): a reader sees the old or the new
-- table, never a half-written one. A crash before the exchange leaves mart_hourly_events untouched.
-- Parameters: hour_ranges (JSON [["from", "to"], ...] of UTC hours).
USE {database:Identifier};

DROP TABLE IF EXISTS mart_hourly_events__next;

CREATE TABLE mart_hourly_events__next AS mart_hourly_events;

INSERT INTO mart_hourly_events__next
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT *
FROM mart_hourly_events
WHERE NOT arrayExists(r -> hour >= r.1 AND hour < r.2, ranges);

-- Events per hour, page path, browser and device type.
INSERT INTO mart_hourly_events__next (hour, page_url_path, browser_name, device_type, events)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT hour, page_url_path, browser_name, device_type, count()
FROM marts_events_stage
WHERE arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, page_url_path, browser_name, device_type;

EXCHANGE TABLES mart_hourly_events AND mart_hourly_events__next;

DROP TABLE mart_hourly_events__next;
