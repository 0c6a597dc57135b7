-- Order-independent checksum of every mart: row count and the wrapping sum of row hashes
-- (duplicated rows do not cancel out as with a XOR). Distinct-user states are finalized
-- first, so equal sets give equal hashes whatever their insertion order.
SELECT 'mart_hourly_events', count(), toString(sum(cityHash64(hour, page_url_path, browser_name, device_type, events)))
FROM {database:Identifier}.mart_hourly_events
UNION ALL
SELECT 'mart_leading_pages', count(), toString(sum(cityHash64(hour, page_url, browser_name, device_type, purchases)))
FROM {database:Identifier}.mart_leading_pages
UNION ALL
SELECT 'mart_purchases_by_source', count(), toString(sum(cityHash64(hour, utm_source, utm_medium, utm_campaign, purchases, finalizeAggregation(buyers))))
FROM {database:Identifier}.mart_purchases_by_source
UNION ALL
SELECT 'mart_users_by_source', count(), toString(sum(cityHash64(hour, utm_source, utm_medium, utm_campaign, events, finalizeAggregation(users))))
FROM {database:Identifier}.mart_users_by_source
UNION ALL
SELECT 'mart_purchases_by_region', count(), toString(sum(cityHash64(hour, geo_country, geo_region_name, purchases, finalizeAggregation(buyers))))
FROM {database:Identifier}.mart_purchases_by_region;
