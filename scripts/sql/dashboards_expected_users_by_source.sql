-- Dashboards check only: "Events and users by source" for a range.
SELECT utm_source, sum(events), uniqExactMerge(users)
FROM {database:Identifier}.mart_users_by_source
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY utm_source;
