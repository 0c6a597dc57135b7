-- The views readers query: the five marts, each showing for every hour the rows of the
-- version that is visible there, and parameterised views over them for dashboards.
-- Names inside the bodies are unqualified: USE qualifies them at creation (the
-- parameterised views keep their {from_hour}/{to_hour} in the body, which ClickHouse
-- requires of such a view).
USE {database:Identifier};

-- What is visible, from marts_versions in one read (see create_marts.sql):
--   base_version     the newest committed full rebuild: older rows are hidden everywhere;
--   settled_version  rows up to it are each the only version of their hour;
--   pending_versions the committed versions after it, with their hour ranges: in those
--                    hours the newest of them wins.
-- Only versions after the newest truncate fence count: a refresh a truncate overtook
-- writes nothing anyone sees. A mart view reads this once per use, so a query sees one
-- commit for all its hours.
CREATE OR REPLACE VIEW marts_visibility AS
SELECT
    maxIf(version, status = 'committed' AND kind = 'full') AS base_version,
    maxIf(version, status = 'settled') AS settled_version,
    arraySort(arrayFilter(
        pending -> pending.1 > settled_version,
        groupArrayIf((version, ranges), status = 'committed')
    )) AS pending_versions
FROM marts_versions
WHERE version > (SELECT max(fence) FROM truncations WHERE scope = 'marts');

-- Each mart: a row of <mart>_versions is visible when its version is not older than the
-- base and it is the newest committed version of its hour (a settled row unless a pending
-- version covers the hour; a pending row unless a newer pending version does).
CREATE OR REPLACE VIEW mart_hourly_events AS
WITH (SELECT (base_version, settled_version, pending_versions) FROM marts_visibility) AS visibility
SELECT hour, page_url_path, browser_name, device_type, events
FROM mart_hourly_events_versions
WHERE version >= visibility.1
  AND if(
      version <= visibility.2,
      NOT arrayExists(p -> arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3),
      arrayExists(p -> p.1 = version, visibility.3)
          AND NOT arrayExists(p -> p.1 > version AND arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3)
  );

CREATE OR REPLACE VIEW mart_leading_pages AS
WITH (SELECT (base_version, settled_version, pending_versions) FROM marts_visibility) AS visibility
SELECT hour, page_url, browser_name, device_type, purchases
FROM mart_leading_pages_versions
WHERE version >= visibility.1
  AND if(
      version <= visibility.2,
      NOT arrayExists(p -> arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3),
      arrayExists(p -> p.1 = version, visibility.3)
          AND NOT arrayExists(p -> p.1 > version AND arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3)
  );

CREATE OR REPLACE VIEW mart_purchases_by_source AS
WITH (SELECT (base_version, settled_version, pending_versions) FROM marts_visibility) AS visibility
SELECT hour, utm_source, utm_medium, utm_campaign, purchases, buyers
FROM mart_purchases_by_source_versions
WHERE version >= visibility.1
  AND if(
      version <= visibility.2,
      NOT arrayExists(p -> arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3),
      arrayExists(p -> p.1 = version, visibility.3)
          AND NOT arrayExists(p -> p.1 > version AND arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3)
  );

CREATE OR REPLACE VIEW mart_users_by_source AS
WITH (SELECT (base_version, settled_version, pending_versions) FROM marts_visibility) AS visibility
SELECT hour, utm_source, utm_medium, utm_campaign, events, users
FROM mart_users_by_source_versions
WHERE version >= visibility.1
  AND if(
      version <= visibility.2,
      NOT arrayExists(p -> arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3),
      arrayExists(p -> p.1 = version, visibility.3)
          AND NOT arrayExists(p -> p.1 > version AND arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3)
  );

CREATE OR REPLACE VIEW mart_purchases_by_region AS
WITH (SELECT (base_version, settled_version, pending_versions) FROM marts_visibility) AS visibility
SELECT hour, geo_country, geo_region_name, purchases, buyers
FROM mart_purchases_by_region_versions
WHERE version >= visibility.1
  AND if(
      version <= visibility.2,
      NOT arrayExists(p -> arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3),
      arrayExists(p -> p.1 = version, visibility.3)
          AND NOT arrayExists(p -> p.1 > version AND arrayExists(r -> hour >= r.1 AND hour < r.2, p.2), visibility.3)
  );

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
