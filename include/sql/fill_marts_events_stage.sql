-- The marts' input for a refresh: every event (browser row joined with the location row of
-- the same event_id in the same window) whose time lies in [from - look-back, to) for one of
-- the hour ranges being recomputed, counted once, with its device and geo attributes.
--
-- Cost follows the ranges, not the history: only candidate windows are read, those whose
-- browser_events commit has [min_event_time, max_event_time] overlapping an extended range
-- (from committed_loads, a small table), and every raw table is ordered by window_start, so
-- the reads prune to those windows' granules.
--
-- * device/geo attributes come from the rows with the event's click_id in the same window
--   (min() of each attribute, so the result never depends on row order); none: ''.
-- * an event whose rows appear in several windows, or twice in one, is kept once: the
--   smallest (window_start, values...) tuple wins, a deterministic choice.
--
-- Parameters: hour_ranges (JSON [["from", "to"], ...] of UTC hours), lookback_hours.
USE {database:Identifier};

DROP TABLE IF EXISTS marts_events_stage;

CREATE TABLE marts_events_stage
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

INSERT INTO marts_events_stage
WITH
    JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges,
    toIntervalHour({lookback_hours:UInt32}) AS lookback,
    candidate_windows AS (
        SELECT window_start
        FROM committed_loads
        WHERE table_name = 'browser_events'
          AND status = 'loaded'
          AND arrayExists(r -> min_event_time < r.2 AND max_event_time + lookback >= r.1, ranges)
    )
SELECT
    event_id,
    chosen.1 AS window_start,
    chosen.2 AS event_timestamp,
    toStartOfHour(chosen.2) AS hour,
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
        min(tuple(
            b.window_start, b.event_timestamp, b.click_id,
            toString(l.page_url), toString(l.page_url_path), toString(b.browser_name),
            d.device_type, d.user_domain_id, g.geo_country, g.geo_region_name,
            toString(l.utm_source), toString(l.utm_medium), toString(l.utm_campaign)
        )) AS chosen
    FROM
    (
        SELECT window_start, event_id, event_timestamp, click_id, browser_name
        FROM browser_events
        WHERE window_start IN candidate_windows
          AND arrayExists(r -> event_timestamp < r.2 AND event_timestamp + lookback >= r.1, ranges)
    ) AS b
    INNER JOIN
    (
        SELECT window_start, event_id, page_url, page_url_path, utm_source, utm_medium, utm_campaign
        FROM location_events
        WHERE window_start IN candidate_windows
    ) AS l ON l.window_start = b.window_start AND l.event_id = b.event_id
    LEFT JOIN
    (
        SELECT
            window_start,
            click_id,
            min(toString(device_type)) AS device_type,
            min(toString(user_domain_id)) AS user_domain_id
        FROM device_events
        WHERE window_start IN candidate_windows
        GROUP BY window_start, click_id
    ) AS d ON d.window_start = b.window_start AND d.click_id = b.click_id
    LEFT JOIN
    (
        SELECT
            window_start,
            click_id,
            min(toString(geo_country)) AS geo_country,
            min(toString(geo_region_name)) AS geo_region_name
        FROM geo_events
        WHERE window_start IN candidate_windows
        GROUP BY window_start, click_id
    ) AS g ON g.window_start = b.window_start AND g.click_id = b.click_id
    GROUP BY b.event_id
);
