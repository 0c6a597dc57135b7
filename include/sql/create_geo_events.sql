-- Every load's rows of geo_events; the view geo_events shows only committed loads.
-- Column order: load metadata, then the JSON keys in the order of config/clickstream.toml.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS geo_events_loads
(
    window_start DateTime('UTC'),
    load_id UUID,
    source_key String,
    source_etag String,
    loaded_at DateTime64(6, 'UTC'),
    click_id UUID,
    geo_latitude Float64,
    geo_longitude Float64,
    geo_country LowCardinality(String),
    geo_timezone LowCardinality(String),
    geo_region_name LowCardinality(String),
    ip_address String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, load_id, click_id);

CREATE VIEW IF NOT EXISTS geo_events AS
SELECT *
FROM geo_events_loads
WHERE (window_start, load_id) IN (
    SELECT window_start, load_id FROM committed_loads WHERE table_name = 'geo_events'
);
