-- Events per hour, page path, browser and device type, for the hours of one chunk of a
-- refresh, under its version (invisible until the version's commit row).
-- Parameters: version, hour_ranges (JSON [["from", "to"], ...] of UTC hours).
INSERT INTO {database:Identifier}.mart_hourly_events_versions
    (hour, version, page_url_path, browser_name, device_type, events)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT hour, {version:UInt64}, page_url_path, browser_name, device_type, count()
FROM {database:Identifier}.{stage:Identifier}
WHERE arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, page_url_path, browser_name, device_type;
