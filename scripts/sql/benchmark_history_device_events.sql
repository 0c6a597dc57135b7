-- Benchmark only (scripts/benchmark_marts.py): synthetic device_events, `per_hour` rows
-- in each of the `hours` windows from window number `first_hour` of a history starting at
-- `first_window` (a long history is written in slices), line-aligned with
-- benchmark_history_browser_events: row n repeats the device of its click.
-- Window w = n / per_hour, click c = n / events_per_click; the OS is drawn per click with the
-- generator's shares, the user from a pool of five times the hourly volume.
-- Ids are deterministic: sipHash128 of a kind and a number is 16 bytes, read as a UUID; the
-- kind ('click', 'user', a table's load) keeps the id spaces apart across the four files.
INSERT INTO {database:Identifier}.device_events_loads
SELECT
    window_start,
    reinterpretAsUUID(sipHash128('device_events', w)) AS load_id,
    concat('synthetic/', toString(window_start)) AS source_key,
    'synthetic' AS source_etag,
    now64(6, 'UTC') AS loaded_at,
    reinterpretAsUUID(sipHash128('click', c)) AS click_id,
    os_name AS os,
    multiIf(o < 2, 'Windows', o < 5, 'MacOS', o < 6, 'Linux', o < 12, 'Android', 'iOS') AS os_name,
    'Europe/Moscow' AS os_timezone,
    if(os_name IN ('Android', 'iOS'), 'Mobile', 'Computer') AS device_type,
    os_name IN ('Android', 'iOS') AS device_is_mobile,
    concat('user', toString(u), '@example.com') AS user_custom_id,
    reinterpretAsUUID(sipHash128('user', u)) AS user_domain_id
FROM
(
    SELECT
        number AS n,
        intDiv(n, {per_hour:UInt32}) AS w,
        intDiv(n, {events_per_click:UInt32}) AS c,
        {first_window:DateTime('UTC')} + toIntervalHour(w) AS window_start,
        cityHash64('os', c) % 20 AS o,
        cityHash64('user', c) % (5 * {per_hour:UInt32}) AS u
    FROM numbers({first_hour:UInt32} * {per_hour:UInt32}, {hours:UInt32} * {per_hour:UInt32})
);
