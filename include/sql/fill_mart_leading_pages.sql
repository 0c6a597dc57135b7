-- Purchases per purchase hour and page leading to them, for the hours of one chunk of a
-- refresh, under its version (invisible until the version's commit row).
-- Parameters: version, hour_ranges (JSON [["from", "to"], ...] of UTC hours),
-- purchase_page_path, checkout_paths (JSON array), lookback_hours.
-- The journey of a purchase P of click C at t is C's events in (s, t), s = greatest(C's
-- previous purchase, t - look-back); pages are page_url of journey events whose path is not
-- a checkout path; a purchase counts once per page. The stage holds [from - look-back, to),
-- so every journey of a purchase in the chunk's hours is complete.
INSERT INTO {database:Identifier}.mart_leading_pages_versions
    (hour, version, page_url, browser_name, device_type, purchases)
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
        FROM {database:Identifier}.{stage:Identifier}
        WHERE page_url_path = {purchase_page_path:String}
    )
SELECT p.hour, {version:UInt64}, e.page_url, p.browser_name, p.device_type, uniqExact(p.event_id)
FROM purchases AS p
INNER JOIN {database:Identifier}.{stage:Identifier} AS e ON e.click_id = p.click_id
WHERE arrayExists(r -> p.hour >= r.1 AND p.hour < r.2, ranges)
  AND e.event_timestamp > p.journey_start
  AND e.event_timestamp < p.event_timestamp
  AND NOT has(JSONExtract({checkout_paths:String}, 'Array(String)'), toString(e.page_url_path))
GROUP BY p.hour, e.page_url, p.browser_name, p.device_type;
