-- Events and distinct users (non-empty user_domain_id) per hour and utm fields, for the
-- hours of one chunk of a refresh, under its version (invisible until its commit row).
-- Parameters: version, hour_ranges (JSON [["from", "to"], ...] of UTC hours).
INSERT INTO {database:Identifier}.mart_users_by_source_versions
    (hour, version, utm_source, utm_medium, utm_campaign, events, users)
WITH JSONExtract({hour_ranges:String}, 'Array(Tuple(DateTime(\'UTC\'), DateTime(\'UTC\')))') AS ranges
SELECT
    hour, {version:UInt64}, utm_source, utm_medium, utm_campaign,
    count(), uniqExactIfState(user_domain_id, user_domain_id != '')
FROM {database:Identifier}.{stage:Identifier}
WHERE arrayExists(r -> hour >= r.1 AND hour < r.2, ranges)
GROUP BY hour, utm_source, utm_medium, utm_campaign;
