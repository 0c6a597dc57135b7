-- The commit row of a load: written only if no truncate of the raw layer wrote a fence
-- since the load began ({raw_fence}, read then) and every row the load staged is still
-- there. A truncate writes a fence, empties the staged rows (<table>_loads), writes
-- another fence, then empties ingest_log: a commit that lands before that fence is emptied
-- with ingest_log; one that comes after it writes nothing. So no window is final without
-- its rows. The loader reads the row back (select_load_commit.sql) to know which happened.
INSERT INTO {database:Identifier}.ingest_log
(
    load_id, table_name, window_start, status, source_bucket, source_key, source_etag,
    source_bytes, rows, min_event_time, max_event_time, started_at, finished_at, duration_ms,
    error, dag_run_id, try_number, out_of_window_rows
)
SELECT
    {load_id:UUID},
    {table_name:String},
    {window_start:DateTime('UTC')},
    'loaded',
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
    '',
    {dag_run_id:String},
    {try_number:UInt32},
    {out_of_window_rows:UInt64}
FROM
(
    SELECT count() AS staged_rows
    FROM {database:Identifier}.{loads_table:Identifier}
    WHERE window_start = {window_start:DateTime('UTC')} AND load_id = {load_id:UUID}
)
WHERE staged_rows = {rows:UInt64}
  AND (SELECT max(fence) FROM {database:Identifier}.truncations WHERE scope = 'raw') = {raw_fence:UInt64};
