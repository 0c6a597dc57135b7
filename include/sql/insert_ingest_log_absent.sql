-- One ingest_log row per object absent past the lateness horizon, all in one INSERT so that
-- an hour with nothing to load costs a share of one statement. absent is a JSON array of
-- [load_id, table_name, window_start, source_key, error]; status is 'missing' (outcome fail)
-- or 'skipped' (outcome skip: a commit of the empty window). Stamped by the warehouse's
-- clock, which orders commits (see insert_ingest_log.sql). An object whose window another
-- task committed at or after {committed_since} (the start of the batch that found it
-- absent) arrived meanwhile: it is not recorded, so 'skipped' never empties that load.
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
    {status:String},
    {source_bucket:String},
    entry.4,
    '',
    0,
    0,
    NULL,
    NULL,
    now64(6, 'UTC'),
    now64(6, 'UTC'),
    0,
    entry.5,
    {dag_run_id:String},
    {try_number:UInt32}
FROM
(
    SELECT arrayJoin(JSONExtract({absent:String}, 'Array(Tuple(String, String, String, String, String))')) AS entry
)
WHERE (entry.2, toDateTime(entry.3, 'UTC')) NOT IN (
    SELECT table_name, window_start
    FROM {database:Identifier}.ingest_log
    WHERE status IN ('loaded', 'skipped') AND finished_at >= {committed_since:DateTime64(6, 'UTC')}
);
