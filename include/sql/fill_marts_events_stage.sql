-- The marts' input for one chunk of a refresh: every event (browser row joined with the
-- location row of the same event_id in the same window) whose time lies in
-- [from - look-back, to) for one of the chunk's hour ranges, with its device and geo
-- attributes. Whole hours only, so every hour is staged from all of its events.
--
-- Cost follows the chunk, not the history: candidate windows come from marts_window_hours
-- (the windows whose events span the staged hours, an index read), their committed loads
-- from committed_loads filtered on those windows, and every <table>_loads table is read
-- by (window_start, load_id), its primary key. This is the raw views' own rule (a window
-- shows the load of its newest commit) applied to the candidate windows only: the views
-- would build their set of committed loads over all windows on every read.
--
-- * device/geo attributes come from the rows with the event's click_id in the same window
--   (min() of each attribute, so the result never depends on row order); none: ''.
-- * copies of an event (the same event_id in several windows, or twice in one) stamped in
--   the same hour count once: the smallest (window_start, values...) tuple wins. The
--   choice depends only on that hour's rows, so any chunking gives the same marts.
--
-- Parameters: stage (the refresh's own working table, so refreshes never share one),
-- hour_ranges (JSON [["from", "to"], ...] of UTC hours), lookback_hours.
USE {database:Identifier};

DROP TABLE IF EXISTS {stage:Identifier};

CREATE TABLE {stage:Identifier}
(
    event_id UUID,
    window_start DateTime('UTC'),
    event_timestamp DateTime64(6, 'UTC'),
    hour DateTime('UTC'),
    click_id UUID,
    page_url LowCardinality(String),
    page_url_path LowCardinality(String),
    browser_name LowCardinality(String),
    device_type LowCardinality(String),
    user_domain_id String,
    geo_country LowCardinality(String),
    geo_region_name LowCardinality(String),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY (click_id, event_timestamp, event_id);

INSERT INTO {stage:Identifier}
WITH
    JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges,
    toIntervalHour({lookback_hours:UInt32}) AS lookback,
    candidate_windows AS (
        SELECT DISTINCT window_start
        FROM marts_window_hours
        WHERE hour IN (
            SELECT toDateTime(arrayJoin(arrayFlatten(arrayMap(
                r -> range(toUInt32(r.1 - lookback), toUInt32(r.2), 3600),
                JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))')
            ))), 'UTC')
        )
    ),
    committed AS (
        SELECT table_name, window_start, load_id
        FROM committed_loads
        WHERE window_start IN candidate_windows AND status = 'loaded'
    )
SELECT
    event_id,
    chosen.1 AS window_start,
    chosen.2 AS event_timestamp,
    event_hour AS hour,
    chosen.3 AS click_id,
    chosen.4 AS page_url,
    chosen.5 AS page_url_path,
    chosen.6 AS browser_name,
    chosen.7 AS device_type,
    chosen.8 AS user_domain_id,
    chosen.9 AS geo_country,
    chosen.10 AS geo_region_name,
    chosen.11 AS utm_source,
    chosen.12 AS utm_medium,
    chosen.13 AS utm_campaign
FROM
(
    SELECT
        b.event_id AS event_id,
        toStartOfHour(b.event_timestamp) AS event_hour,
        min(tuple(
            b.window_start, b.event_timestamp, b.click_id,
            toString(l.page_url), toString(l.page_url_path), toString(b.browser_name),
            d.device_type, d.user_domain_id, g.geo_country, g.geo_region_name,
            toString(l.utm_source), toString(l.utm_medium), toString(l.utm_campaign)
        )) AS chosen
    FROM
    (
        SELECT window_start, event_id, event_timestamp, click_id, browser_name
        FROM browser_events_loads
        WHERE window_start IN candidate_windows
          AND (window_start, load_id) IN (SELECT window_start, load_id FROM committed WHERE table_name = 'browser_events')
          AND arrayExists(r -> event_timestamp < r.2 AND event_timestamp + lookback >= r.1, ranges)
          -- Out of window (source.event_time_tolerance_hours): a stray stamp is no event of the marts.
          AND event_timestamp >= window_start - toIntervalHour({tolerance_hours:UInt32})
          AND event_timestamp < window_start + toIntervalHour(1 + {tolerance_hours:UInt32})
    ) AS b
    INNER JOIN
    (
        SELECT window_start, event_id, page_url, page_url_path, utm_source, utm_medium, utm_campaign
        FROM location_events_loads
        WHERE window_start IN candidate_windows
          AND (window_start, load_id) IN (SELECT window_start, load_id FROM committed WHERE table_name = 'location_events')
    ) AS l ON l.window_start = b.window_start AND l.event_id = b.event_id
    LEFT JOIN
    (
        SELECT
            window_start,
            click_id,
            min(toString(device_type)) AS device_type,
            min(toString(user_domain_id)) AS user_domain_id
        FROM device_events_loads
        WHERE window_start IN candidate_windows
          AND (window_start, load_id) IN (SELECT window_start, load_id FROM committed WHERE table_name = 'device_events')
        GROUP BY window_start, click_id
    ) AS d ON d.window_start = b.window_start AND d.click_id = b.click_id
    LEFT JOIN
    (
        SELECT
            window_start,
            click_id,
            min(toString(geo_country)) AS geo_country,
            min(toString(geo_region_name)) AS geo_region_name
        FROM geo_events_loads
        WHERE window_start IN candidate_windows
          AND (window_start, load_id) IN (SELECT window_start, load_id FROM committed WHERE table_name = 'geo_events')
        GROUP BY window_start, click_id
    ) AS g ON g.window_start = b.window_start AND g.click_id = b.click_id
    GROUP BY b.event_id, event_hour
);
