-- Benchmark only (scripts/benchmark_marts.py): synthetic location_events, `per_hour` rows
-- in each of the `hours` windows from window number `first_hour` of a history starting at
-- `first_window` (a long history is written in slices), line-aligned with
-- benchmark_history_browser_events (row n has the event_id of its page view n).
-- Window w = n / per_hour, click c = n / events_per_click; the page is drawn per page view,
-- the utm fields per click, with the generator's shares.
-- Ids are deterministic: sipHash128 of a kind and a number is 16 bytes, read as a UUID; the
-- kind ('event', a table's load) keeps the id spaces apart across the four files.
INSERT INTO {database:Identifier}.location_events_loads
SELECT
    window_start,
    reinterpretAsUUID(sipHash128('location_events', w)) AS load_id,
    concat('synthetic/', toString(window_start)) AS source_key,
    'synthetic' AS source_etag,
    now64(6, 'UTC') AS loaded_at,
    reinterpretAsUUID(sipHash128('event', n)) AS event_id,
    concat('http://www.dummywebsite.com', page_url_path) AS page_url,
    multiIf(p < 40, '/home', p < 63, '/product_a', p < 78, '/product_b', p < 88, '/cart',
            p < 95, '/payment', '/confirmation') AS page_url_path,
    concat('www.', utm_source, '.com') AS referer_url,
    if(utm_source IN ('google', 'bing'), 'search', 'internal') AS referer_medium,
    multiIf(m < 5, 'cpc', m < 7, 'affiliate', m < 15, 'organic', 'social') AS utm_medium,
    multiIf(s < 3, 'google', s < 9, 'facebook', s < 10, 'bing', s < 14, 'instagram', 'mailchimp')
        AS utm_source,
    multiIf(a < 1, 'ad_1', a < 7, 'ad_2', a < 11, 'ad_3', a < 16, 'ad_4', 'ad_5') AS utm_content,
    if(cityHash64('campaign', c) % 5 = 0, 'campaign_2', 'campaign_1') AS utm_campaign
FROM
(
    SELECT
        number AS n,
        intDiv(n, {per_hour:UInt32}) AS w,
        intDiv(n, {events_per_click:UInt32}) AS c,
        {first_window:DateTime('UTC')} + toIntervalHour(w) AS window_start,
        cityHash64('page', n) % 100 AS p,
        cityHash64('source', c) % 20 AS s,
        cityHash64('medium', c) % 20 AS m,
        cityHash64('content', c) % 20 AS a
    FROM numbers({first_hour:UInt32} * {per_hour:UInt32}, {hours:UInt32} * {per_hour:UInt32})
);
