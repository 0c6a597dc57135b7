-- Dashboards check only: "Purchases and buyers by source, medium and campaign" for a range,
-- and beside it the sum of the hours' distinct buyers, which a correct chart must not show.
SELECT utm_source, utm_medium, utm_campaign, sum(purchases), uniqExactMerge(buyers), sum(finalizeAggregation(buyers))
FROM {database:Identifier}.mart_purchases_by_source
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY utm_source, utm_medium, utm_campaign;
