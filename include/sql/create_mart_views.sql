-- Parameterised views over the marts, for dashboards: each answers for the hours
-- [from_hour, to_hour), e.g.
--   SELECT * FROM clickstream.top_leading_pages(from_hour = '2024-04-11 00:00:00', to_hour = '2024-04-12 00:00:00')
-- The {from_hour}/{to_hour} parameters stay in the view bodies (ClickHouse makes such a view
-- parameterised), so names inside the bodies are unqualified: USE qualifies them at creation.
USE {database:Identifier};

-- Top-10 pages leading to a purchase.
CREATE OR REPLACE VIEW top_leading_pages AS
SELECT page_url, sum(purchases) AS purchases
FROM mart_leading_pages
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY page_url
ORDER BY purchases DESC, page_url
LIMIT 10;

-- Top-10 pages leading to a purchase per browser and device type.
CREATE OR REPLACE VIEW top_leading_pages_by_browser_device AS
SELECT browser_name, device_type, page_url, sum(purchases) AS purchases
FROM mart_leading_pages
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY browser_name, device_type, page_url
ORDER BY browser_name, device_type, purchases DESC, page_url
LIMIT 10 BY browser_name, device_type;

-- Top-10 regions by purchases, with their distinct buyers.
CREATE OR REPLACE VIEW top_regions_by_purchases AS
SELECT geo_country, geo_region_name, sum(purchases) AS purchases, uniqExactMerge(buyers) AS buyers
FROM mart_purchases_by_region
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY geo_country, geo_region_name
ORDER BY purchases DESC, geo_country, geo_region_name
LIMIT 10;

-- Purchases and distinct buyers per source and campaign.
CREATE OR REPLACE VIEW purchases_by_source_campaign AS
SELECT utm_source, utm_campaign, sum(purchases) AS purchases, uniqExactMerge(buyers) AS buyers
FROM mart_purchases_by_source
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY utm_source, utm_campaign
ORDER BY purchases DESC, utm_source, utm_campaign;

-- Distinct users per source and their share of all distinct users of the range (a user
-- who came from two sources counts in both, so shares can add up to more than 1).
CREATE OR REPLACE VIEW users_share_by_source AS
SELECT
    utm_source,
    uniqExactMerge(users) AS users,
    any(all_users.total) AS total_users,
    if(total_users = 0, 0, users / total_users) AS share
FROM mart_users_by_source
CROSS JOIN
(
    SELECT uniqExactMerge(users) AS total
    FROM mart_users_by_source
    WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
) AS all_users
WHERE hour >= {from_hour:DateTime('UTC')} AND hour < {to_hour:DateTime('UTC')}
GROUP BY utm_source
ORDER BY users DESC, utm_source;
