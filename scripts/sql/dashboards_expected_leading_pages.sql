-- Dashboards check only: purchases each page led to for a range (the chart shows the top 10).
SELECT page_url, sum(purchases)
FROM {database:Identifier}.mart_leading_pages
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY page_url;
