-- Every load's rows of browser_events; the view browser_events shows only committed loads.
-- Column order: load metadata, then the JSON keys in the order of config/clickstream.toml.
USE {database:Identifier};

CREATE TABLE IF NOT EXISTS browser_events_loads
(
    window_start DateTime('UTC'),
    load_id UUID,
    source_key String,
    source_etag String,
    loaded_at DateTime64(6, 'UTC'),
    event_id UUID,
    event_timestamp DateTime64(6,
     'UTC'),
    event_type LowCardinality(String),
    click_id UUID,
    browser_name LowCardinality(String),
    browser_user_agent String,
    browser_language LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, load_id, event_id);

CREATE VIEW IF NOT EXISTS browser_events AS
SELECT *
FROM browser_events_loads
WHERE (window_start, load_id) IN (
    SELECT window_start, load_id FROM committed_loads WHERE table_name = 'browser_events'
);
