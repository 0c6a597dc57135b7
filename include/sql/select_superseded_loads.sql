-- Earlier committed loads of a window, hidden since a newer load committed: their rows are
-- garbage. Loads still in flight have no commit row yet, so they never appear here.
SELECT toString(load_id)
FROM {database:Identifier}.ingest_log
WHERE table_name = {table_name:String}
  AND window_start = {window_start:DateTime('UTC')}
  AND status IN ('loaded', 'skipped')
  AND load_id NOT IN (
      SELECT load_id
      FROM {database:Identifier}.committed_loads
      WHERE table_name = {table_name:String} AND window_start = {window_start:DateTime('UTC')}
  );
