-- Purchases and distinct buyers per purchase hour, country and region, for the hours of
-- one chunk of a refresh, under its version (invisible until the version's commit row).
-- Parameters: version, hour_ranges (JSON [["from", "to"], ...] of UTC hours), purchase_page_path.
INSERT INTO {database:Identifier}.mart_purchases_by_region_versions
    (hour, version, geo_country, geo_region_name, purchases, buyers)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT
    hour, {version:UInt64}, geo_country, geo_region_name,
    count(), uniqExactIfState(user_domain_id, user_domain_id != '')
FROM {database:Identifier}.{stage:Identifier}
WHERE page_url_path = {purchase_page_path:String} AND arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, geo_country, geo_region_name;
