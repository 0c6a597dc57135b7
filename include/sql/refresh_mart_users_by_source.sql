-- Rebuild mart_users_by_source for the hour ranges being recomputed and swap it in atomically.
-- mart_users_by_source__next = the current rows outside the ranges (copied: marts are small aggregates,
-- so this costs little next to the raw scan) + the rows recomputed from marts_events_stage;
-- then EXCHANGE TABLES (atomic in an Atomic database): a reader sees the old or the new
-- table, never a half-written one. A crash before the exchange leaves mart_users_by_source untouched.
-- Parameters: hour_ranges (JSON [["from", "to"], ...] of UTC hours).
USE {database:Identifier};

DROP TABLE IF EXISTS mart_users_by_source__next;

CREATE TABLE mart_users_by_source__next AS mart_users_by_source;

INSERT INTO mart_users_by_source__next
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT *
FROM mart_users_by_source
WHERE NOT arrayExists(r -> hour >= r.1 AND hour < r.2, ranges);

-- Events and distinct users (non-empty user_domain_id) per hour and utm fields.
INSERT INTO mart_users_by_source__next (hour, utm_source, utm_medium, utm_campaign, events, users)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT hour, utm_source, utm_medium, utm_campaign, count(), uniqExactIfState(user_domain_id, user_domain_id != '')
FROM marts_events_stage
WHERE arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, utm_source, utm_medium, utm_campaign;

EXCHANGE TABLES mart_users_by_source AND mart_users_by_source__next;

DROP TABLE mart_users_by_source__next;
