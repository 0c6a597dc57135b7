-- Benchmark only (scripts/benchmark_marts.py): synthetic geo_events, `per_hour` rows
-- in each of the `hours` windows from window number `first_hour` of a history starting at
-- `first_window` (a long history is written in slices), line-aligned with
-- benchmark_history_browser_events: row n repeats the place of its click.
-- Window w = n / per_hour, click c = n / events_per_click; one of 40 regions per click.
-- Ids are deterministic: sipHash128 of a kind and a number is 16 bytes, read as a UUID; the
-- kind ('click', a table's load) keeps the id spaces apart across the four files.
INSERT INTO {database:Identifier}.geo_events_loads
SELECT
    window_start,
    reinterpretAsUUID(sipHash128('geo_events', w)) AS load_id,
    concat('synthetic/', toString(window_start)) AS source_key,
    'synthetic' AS source_etag,
    now64(6, 'UTC') AS loaded_at,
    reinterpretAsUUID(sipHash128('click', c)) AS click_id,
    55.75 AS geo_latitude,
    37.61 AS geo_longitude,
    'Russia' AS geo_country,
    'Europe/Moscow' AS geo_timezone,
    concat('Region ', toString(cityHash64('region', c) % 40)) AS geo_region_name,
    '10.0.0.1' AS ip_address
FROM
(
    SELECT
        number AS n,
        intDiv(n, {per_hour:UInt32}) AS w,
        intDiv(n, {events_per_click:UInt32}) AS c,
        {first_window:DateTime('UTC')} + toIntervalHour(w) AS window_start
    FROM numbers({first_hour:UInt32} * {per_hour:UInt32}, {hours:UInt32} * {per_hour:UInt32})
);
