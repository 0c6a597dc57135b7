-- Benchmark only (scripts/benchmark_marts.py): synthetic browser_events, `per_hour` rows
-- in each of the `hours` windows from window number `first_hour` of a history starting at
-- `first_window` (a long history is written in slices), straight into the loads table.
-- Row n is page view n of the whole history: window w = n / per_hour, click c = n /
-- events_per_click. Its time falls in [window - 15 min, window + 45 min): a quarter of each
-- window's events is stamped in the hour before, as in the source.
-- Ids are deterministic: sipHash128 of a kind and a number is 16 bytes, read as a UUID; the
-- kind ('event', 'click', a table's load) keeps the id spaces apart across the four files.
INSERT INTO {database:Identifier}.browser_events_loads
SELECT
    window_start,
    reinterpretAsUUID(sipHash128('browser_events', w)) AS load_id,
    concat('synthetic/', toString(window_start)) AS source_key,
    'synthetic' AS source_etag,
    now64(6, 'UTC') AS loaded_at,
    reinterpretAsUUID(sipHash128('event', n)) AS event_id,
    toDateTime64(window_start, 6, 'UTC') - toIntervalMinute(15)
        + toIntervalMicrosecond(cityHash64('time', n) % 3600000000) AS event_timestamp,
    'pageview' AS event_type,
    reinterpretAsUUID(sipHash128('click', c)) AS click_id,
    multiIf(b < 10, 'Chrome', b < 15, 'Firefox', b < 16, 'InternetExplorer', b < 18, 'Safari', 'Opera')
        AS browser_name,
    'Mozilla/5.0' AS browser_user_agent,
    'en_US' AS browser_language
FROM
(
    SELECT
        number AS n,
        intDiv(n, {per_hour:UInt32}) AS w,
        intDiv(n, {events_per_click:UInt32}) AS c,
        {first_window:DateTime('UTC')} + toIntervalHour(w) AS window_start,
        cityHash64('browser', c) % 20 AS b
    FROM numbers({first_hour:UInt32} * {per_hour:UInt32}, {hours:UInt32} * {per_hour:UInt32})
);
