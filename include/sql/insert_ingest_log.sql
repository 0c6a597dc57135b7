-- One row of a load attempt. finished_at is the warehouse's clock, never the worker's: it
-- orders the commits of a window (committed_loads takes the newest), so a reload from a
-- worker whose clock is behind still replaces what it reloads.
INSERT INTO {database:Identifier}.ingest_log
(
    load_id, table_name, window_start, status, source_bucket, source_key, source_etag,
    source_bytes, rows, min_event_time, max_event_time, started_at, finished_at, duration_ms,
    error, dag_run_id, try_number
)
SELECT
    {load_id:UUID},
    {table_name:String},
    {window_start:DateTime('UTC')},
    {status:String},
    {source_bucket:String},
    {source_key:String},
    {source_etag:String},
    {source_bytes:UInt64},
    {rows:UInt64},
    toDateTime64OrNull({min_event_time:String}, 6, 'UTC'),
    toDateTime64OrNull({max_event_time:String}, 6, 'UTC'),
    {started_at:DateTime64(6, 'UTC')},
    now64(6, 'UTC'),
    {duration_ms:UInt64},
    {error:String},
    {dag_run_id:String},
    {try_number:UInt32};
