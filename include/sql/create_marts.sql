-- The purchase marts' storage and bookkeeping. Readers query the views of
-- create_mart_views.sql (mart_hourly_events, ...), never these tables.
--
-- A refresh writes the rows of the hours it recomputes, for all five marts, under a new
-- version number into <mart>_versions; nobody sees them until one row with status
-- 'committed' for that version lands in marts_versions. That single-row INSERT is atomic,
-- so the refreshed hours of all five marts become visible together. Rows a commit hides are
-- deleted by the next refresh (lightweight DELETE, written as patch parts: its cost follows
-- the hours deleted, not the table).
--
-- hour is the event hour (toStartOfHour(event_timestamp), UTC); for purchase marts it is
-- the hour of the purchase. Distinct users are uniqExact states of user_domain_id, so any
-- range of hours merges exactly (uniqExactMerge).
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS mart_hourly_events_versions
(
    hour DateTime('UTC'),
    version UInt64,
    page_url_path LowCardinality(String),
    browser_name LowCardinality(String),
    device_type LowCardinality(String),
    events UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, version, page_url_path, browser_name, device_type)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

CREATE TABLE IF NOT EXISTS mart_leading_pages_versions
(
    hour DateTime('UTC'),
    version UInt64,
    page_url LowCardinality(String),
    browser_name LowCardinality(String),
    device_type LowCardinality(String),
    purchases UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, version, page_url, browser_name, device_type)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

CREATE TABLE IF NOT EXISTS mart_purchases_by_source_versions
(
    hour DateTime('UTC'),
    version UInt64,
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    purchases UInt64,
    buyers AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, version, utm_source, utm_medium, utm_campaign)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

CREATE TABLE IF NOT EXISTS mart_users_by_source_versions
(
    hour DateTime('UTC'),
    version UInt64,
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    events UInt64,
    users AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, version, utm_source, utm_medium, utm_campaign)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

CREATE TABLE IF NOT EXISTS mart_purchases_by_region_versions
(
    hour DateTime('UTC'),
    version UInt64,
    geo_country LowCardinality(String),
    geo_region_name LowCardinality(String),
    purchases UInt64,
    buyers AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, version, geo_country, geo_region_name)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

-- The life of each version, a few rows at any time (older ones are deleted once settled):
--   started   - written before the version's rows, with the hours it will recompute, so
--               the rows of a refresh that died before its commit can be found and deleted;
--   committed - the commit: from this row on, the version's rows are what readers see for
--               its hours (kind 'full': for every hour, older versions are hidden);
--   settled   - the rows this version hid, and any uncommitted leftovers older than it,
--               are deleted: rows up to this version need no per-hour check any more;
--   abandoned - the refresh failed before its commit: its rows are leftovers at once.
-- A version is on record as started (without hours) from the moment it is taken, before
-- the refresh reads anything, so overlapping refreshes see it in flight.
CREATE TABLE IF NOT EXISTS marts_versions
(
    version UInt64,
    status LowCardinality(String),
    kind LowCardinality(String),
    ranges Array(Tuple(DateTime('UTC'), DateTime('UTC'))),
    commits UInt64,
    recorded_at DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (version, status)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

-- One row per commit (ingest_log row with status loaded/skipped) the marts reflect.
-- No row after the newest truncate fence means "never built, or reset": the next refresh
-- rebuilds in full. Only written and counted: pending commits come from marts_pending_commits.
CREATE TABLE IF NOT EXISTS marts_applied_loads
(
    load_id UUID,
    table_name LowCardinality(String),
    window_start DateTime('UTC'),
    applied_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = MergeTree
ORDER BY (table_name, window_start, load_id);

-- Watermarks written before versions were recorded in them count as version 0: the first
-- refresh after the upgrade rebuilds the marts in full once.
ALTER TABLE marts_applied_loads ADD COLUMN IF NOT EXISTS version UInt64;

-- Commits the marts do not reflect yet: a queue filled by the materialized view below as
-- each commit row is inserted into ingest_log, emptied by the refresh that applies them. A
-- refresh reads only this queue, so finding what changed costs what changed, whatever the
-- length of ingest_log, and no commit is missed whatever order concurrent loads finish in.
-- Rows of other statuses (failed, started, missing, ...) never enter it.
CREATE TABLE IF NOT EXISTS marts_pending_commits
(
    load_id UUID,
    table_name LowCardinality(String),
    window_start DateTime('UTC'),
    status LowCardinality(String),
    finished_at DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (window_start, table_name, load_id)
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS marts_pending_commits_feed TO marts_pending_commits AS
SELECT load_id, table_name, window_start, status, finished_at
FROM ingest_log
WHERE status IN ('loaded', 'skipped');

-- Which windows hold events of each hour: every hour of the event-time span of every
-- browser_events load the marts have seen, so a refresh reads only the windows that can
-- hold the hours it recomputes. Loads replaced since keep their rows here (a superset
-- costs a read of a window, never a wrong result); a full rebuild writes it anew.
CREATE TABLE IF NOT EXISTS marts_window_hours
(
    hour DateTime('UTC'),
    window_start DateTime('UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (hour, window_start);
