-- The purchase marts, one row per hour and key, and the marts' watermark.
-- hour is the event hour (toStartOfHour(event_timestamp), UTC); for purchase marts it is
-- the hour of the purchase. Distinct users are uniqExact states of user_domain_id, so any
-- range of hours merges exactly (uniqExactMerge). Each mart is replaced as a whole by
-- EXCHANGE TABLES (see refresh_mart_*.sql), never truncated in place.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS mart_hourly_events
(
    hour DateTime('UTC'),
    page_url_path LowCardinality(String),
    browser_name LowCardinality(String),
    device_type LowCardinality(String),
    events UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, page_url_path, browser_name, device_type);

CREATE TABLE IF NOT EXISTS mart_leading_pages
(
    hour DateTime('UTC'),
    page_url LowCardinality(String),
    browser_name LowCardinality(String),
    device_type LowCardinality(String),
    purchases UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, page_url, browser_name, device_type);

CREATE TABLE IF NOT EXISTS mart_purchases_by_source
(
    hour DateTime('UTC'),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    purchases UInt64,
    buyers AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, utm_source, utm_medium, utm_campaign);

CREATE TABLE IF NOT EXISTS mart_users_by_source
(
    hour DateTime('UTC'),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    events UInt64,
    users AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, utm_source, utm_medium, utm_campaign);

CREATE TABLE IF NOT EXISTS mart_purchases_by_region
(
    hour DateTime('UTC'),
    geo_country LowCardinality(String),
    geo_region_name LowCardinality(String),
    purchases UInt64,
    buyers AggregateFunction(uniqExact, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, geo_country, geo_region_name);

-- One row per commit (ingest_log row with status loaded/skipped) the marts reflect.
-- Empty means "never built": the next refresh rebuilds every mart in full.
CREATE TABLE IF NOT EXISTS marts_applied_loads
(
    load_id UUID,
    table_name LowCardinality(String),
    window_start DateTime('UTC'),
    applied_at DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY (table_name, window_start, load_id);
