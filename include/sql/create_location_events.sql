-- Every load's rows of location_events; the view location_events shows only committed loads.
-- Column order: load metadata, then the JSON keys in the order of config/clickstream.toml.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS location_events_loads
(
    window_start DateTime('UTC'),
    load_id UUID,
    source_key String,
    source_etag String,
    loaded_at DateTime64(6, 'UTC'),
    event_id UUID,
    page_url LowCardinality(String),
    page_url_path LowCardinality(String),
    referer_url LowCardinality(String),
    referer_medium LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_source LowCardinality(String),
    utm_content LowCardinality(String),
    utm_campaign LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, load_id, event_id);

CREATE VIEW IF NOT EXISTS location_events AS
SELECT *
FROM location_events_loads
WHERE (window_start, load_id) IN (
    SELECT window_start, load_id FROM committed_loads WHERE table_name = 'location_events'
);
