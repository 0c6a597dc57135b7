-- Earlier committed loads of some windows of one table (windows: a JSON array of UTC hours),
-- hidden since a newer load committed: their rows are garbage. Loads still in flight have no
-- commit row yet, so they never appear here.
WITH JSONExtract({windows:String}, 'Array(DateTime(\'UTC\'))') AS windows
SELECT toString(load_id)
FROM {database:Identifier}.ingest_log
WHERE table_name = {table_name:String}
  AND has(windows, window_start)
  AND status IN ('loaded', 'skipped')
  AND load_id NOT IN (
      SELECT load_id
      FROM {database:Identifier}.committed_loads
      WHERE table_name = {table_name:String} AND has(windows, window_start)
  );
