-- Every load's rows of device_events; the view device_events shows only committed loads.
-- Column order: load metadata, then the JSON keys in the order of config/clickstream.toml.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS device_events_loads
(
    window_start DateTime('UTC'),
    load_id UUID,
    source_key String,
    source_etag String,
    loaded_at DateTime64(6, 'UTC'),
    click_id UUID,
    os LowCardinality(String),
    os_name LowCardinality(String),
    os_timezone LowCardinality(String),
    device_type LowCardinality(String),
    device_is_mobile Bool,
    user_custom_id String,
    user_domain_id UUID
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, load_id, click_id);

CREATE VIEW IF NOT EXISTS device_events AS
SELECT *
FROM device_events_loads
WHERE (window_start, load_id) IN (
    SELECT window_start, load_id FROM committed_loads WHERE table_name = 'device_events'
);
