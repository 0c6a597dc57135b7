-- Benchmark only (scripts/benchmark_marts.py): the ingest_log commit of every synthetic
-- window of one table (the benchmark_history_<table> files), so the raw views show them.
-- rows and, for a table with an event-time column, min/max event time are the real ones,
-- as the loader records them; time_column must name a column either way (any, when
-- has_event_time is 0, e.g. loaded_at).
INSERT INTO {database:Identifier}.ingest_log
(
    load_id, table_name, window_start, status, source_bucket, source_key, source_etag,
    source_bytes, rows, min_event_time, max_event_time, started_at, finished_at, duration_ms,
    error, dag_run_id, try_number
)
SELECT
    load_id,
    {table_name:String} AS table_name,
    window_start,
    'loaded' AS status,
    'synthetic' AS source_bucket,
    any(source_key) AS source_key,
    any(source_etag) AS source_etag,
    0 AS source_bytes,
    count() AS rows,
    if({has_event_time:UInt8} = 1, min(event_time), NULL) AS min_event_time,
    if({has_event_time:UInt8} = 1, max(event_time), NULL) AS max_event_time,
    now64(6, 'UTC') AS started_at,
    now64(6, 'UTC') AS finished_at,
    0 AS duration_ms,
    '' AS error,
    'benchmark' AS dag_run_id,
    1 AS try_number
FROM
(
    SELECT window_start, load_id, source_key, source_etag, {time_column:Identifier} AS event_time
    FROM {database:Identifier}.{loads_table:Identifier}
)
GROUP BY window_start, load_id;
