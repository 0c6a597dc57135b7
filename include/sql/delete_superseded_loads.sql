-- Rows of the window's earlier committed loads, hidden since a newer load committed.
-- Loads still in flight have no commit row yet, so they are never touched here.
DELETE FROM {database:Identifier}.{loads_table:Identifier}
WHERE window_start = {window_start:DateTime('UTC')}
  AND load_id IN (
      SELECT load_id
      FROM {database:Identifier}.ingest_log
      WHERE table_name = {table_name:String}
        AND window_start = {window_start:DateTime('UTC')}
        AND status IN ('loaded', 'skipped')
        AND load_id NOT IN (
            SELECT load_id
            FROM {database:Identifier}.committed_loads
            WHERE table_name = {table_name:String} AND window_start = {window_start:DateTime('UTC')}
        )
  );
