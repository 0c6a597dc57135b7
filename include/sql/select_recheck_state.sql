-- What the ingest log says of each table's window in [window_from, window_to), for the
-- bucket re-check: the newest of its deciding rows (a final one, 'stale' when a re-check
-- already queued it, 'source_deleted' when one reported its object gone) and the ETag of
-- the object that row is about. One read by primary key range, whatever the look-back.
SELECT
    table_name,
    toString(window_start),
    argMax(status, finished_at) AS newest_status,
    argMaxIf(source_etag, finished_at, status IN ('loaded', 'rejected', 'source_deleted')) AS known_etag
FROM {database:Identifier}.ingest_log
WHERE window_start >= {window_from:DateTime('UTC')}
  AND window_start < {window_to:DateTime('UTC')}
  AND status IN ('loaded', 'skipped', 'missing', 'rejected', 'stale', 'source_deleted')
GROUP BY table_name, window_start;
