-- What a bucket re-check found, one row per object, all in one INSERT. found is a JSON array
-- of [load_id, table_name, window_start, source_key, source_etag, status, reason]:
--   'stale'           the window loads again (select_unresolved_windows.sql): its object
--                     arrived late, or changed since its load (reason says which, with ETags);
--   'source_deleted'  the object of a loaded window is gone; the window keeps its rows, and
--                     this row keeps it from being reported again.
-- Neither is content: readers keep what the window showed until a new load commits.
INSERT INTO {database:Identifier}.ingest_log
(
    load_id, table_name, window_start, status, source_bucket, source_key, source_etag,
    source_bytes, rows, min_event_time, max_event_time, started_at, finished_at, duration_ms,
    error, dag_run_id, try_number
)
SELECT
    toUUID(entry.1),
    entry.2,
    toDateTime(entry.3, 'UTC'),
    entry.6,
    {source_bucket:String},
    entry.4,
    entry.5,
    0,
    0,
    NULL,
    NULL,
    now64(6, 'UTC'),
    now64(6, 'UTC'),
    0,
    entry.7,
    {dag_run_id:String},
    {try_number:UInt32}
FROM
(
    SELECT arrayJoin(JSONExtract({found:String}, 'Array(Tuple(String, String, String, String, String, String, String))')) AS entry
);
