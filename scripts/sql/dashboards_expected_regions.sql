-- Dashboards check only: purchases and distinct buyers of every region for a range (the
-- chart shows the top 10 of them).
SELECT geo_country, geo_region_name, sum(purchases), uniqExactMerge(buyers)
FROM {database:Identifier}.mart_purchases_by_region
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY geo_country, geo_region_name;
