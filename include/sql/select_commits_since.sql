-- (table_name, window_start) of the commits of windows in [from_window, to_window] that the
-- warehouse received at or after {since}: loads another task committed while a batch ran.
SELECT DISTINCT table_name, toString(window_start)
FROM {database:Identifier}.ingest_log
WHERE status IN ('loaded', 'skipped')
  AND window_start BETWEEN {from_window:DateTime('UTC')} AND {to_window:DateTime('UTC')}
  AND finished_at >= {since:DateTime64(6, 'UTC')};
