-- Purchases and distinct buyers per purchase hour and the purchase's own utm fields, for
-- the hours of one chunk of a refresh, under its version (invisible until its commit row).
-- Parameters: version, hour_ranges (JSON [["from", "to"], ...] of UTC hours), purchase_page_path.
INSERT INTO {database:Identifier}.mart_purchases_by_source_versions
    (hour, version, utm_source, utm_medium, utm_campaign, purchases, buyers)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT
    hour, {version:UInt64}, utm_source, utm_medium, utm_campaign,
    count(), uniqExactIfState(user_domain_id, user_domain_id != '')
FROM {database:Identifier}.{stage:Identifier}
WHERE page_url_path = {purchase_page_path:String} AND arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, utm_source, utm_medium, utm_campaign;
