-- Rebuild mart_leading_pages for the hour ranges being recomputed and swap it in atomically.
-- mart_leading_pages__next = the current rows outside the ranges (copied: marts are small aggregates,
-- so this costs little next to the raw scan) + the rows recomputed from marts_events_stage;
-- then EXCHANGE TABLES (atomic in an Atomic database): a reader sees the old or the new
-- table, never a half-written one. A crash before the exchange leaves mart_leading_pages untouched.
-- Parameters: hour_ranges (JSON [["from", "to"], ...] of UTC hours), purchase_page_path, checkout_paths (JSON array), lookback_hours.
USE {database:Identifier};

DROP TABLE IF EXISTS mart_leading_pages__next;

CREATE TABLE mart_leading_pages__next AS mart_leading_pages;

INSERT INTO mart_leading_pages__next
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT *
FROM mart_leading_pages
WHERE NOT arrayExists(r -> hour >= r.1 AND hour < r.2, ranges);

-- Purchases per purchase hour and page leading to them. The journey of a purchase P of
-- click C at t is C's events in (s, t), s = greatest(C's previous purchase, t - look-back);
-- pages are page_url of journey events whose path is not a checkout path; a purchase counts
-- once per page. The stage holds [from - look-back, to), so every journey is complete.
INSERT INTO mart_leading_pages__next (hour, page_url, browser_name, device_type, purchases)
WITH
    JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges,
    purchases AS (
        SELECT
            event_id,
            click_id,
            event_timestamp,
            hour,
            browser_name,
            device_type,
            greatest(
                max(event_timestamp) OVER (
                    PARTITION BY click_id ORDER BY event_timestamp, event_id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                ),
                event_timestamp - toIntervalHour({lookback_hours:UInt32})
            ) AS journey_start
        FROM marts_events_stage
        WHERE page_url_path = {purchase_page_path:String}
    )
SELECT p.hour, e.page_url, p.browser_name, p.device_type, uniqExact(p.event_id)
FROM purchases AS p
INNER JOIN marts_events_stage AS e ON e.click_id = p.click_id
WHERE arrayExists(r -> p.hour >= r.1 AND p.hour < r.2, ranges)
  AND e.event_timestamp > p.journey_start
  AND e.event_timestamp < p.event_timestamp
  AND NOT has(JSONExtract({checkout_paths:String}, 'Array(String)'), toString(e.page_url_path))
GROUP BY p.hour, e.page_url, p.browser_name, p.device_type;

EXCHANGE TABLES mart_leading_pages AND mart_leading_pages__next;

DROP TABLE mart_leading_pages__next;
