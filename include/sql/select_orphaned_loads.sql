-- Loads of one table, in the windows [from_window, to_window], whose staged rows no reader
-- will see again, with their row counts:
--   * loads that finished (any status but 'started': loaded, skipped, failed, ...) and are
--     not the window's committed load: superseded by a newer commit, or failed (their own
--     clean-up may not have run, e.g. killed during it);
--   * loads that started before {started_before} and never finished. The loader gives up
--     rather than commit past ingest.load_deadline_seconds, so such a load was killed; a
--     load still in flight started later and is never listed.
-- Only loads that still have rows are listed, so that callers run a DELETE (a mutation that
-- visits parts even when it matches nothing) only when there is something to delete. Both
-- tables are ordered by window_start first: the reads prune to the windows concerned.
SELECT toString(window_start), toString(load_id), count()
FROM {database:Identifier}.{loads_table:Identifier}
WHERE window_start BETWEEN {from_window:DateTime('UTC')} AND {to_window:DateTime('UTC')}
  AND (window_start, load_id) IN (
      SELECT window_start, load_id
      FROM {database:Identifier}.ingest_log
      WHERE table_name = {table_name:String}
        AND window_start BETWEEN {from_window:DateTime('UTC')} AND {to_window:DateTime('UTC')}
      GROUP BY window_start, load_id
      HAVING countIf(status != 'started') > 0 OR min(started_at) < {started_before:DateTime64(6, 'UTC')}
  )
  AND (window_start, load_id) NOT IN (
      SELECT window_start, load_id
      FROM {database:Identifier}.committed_loads
      WHERE table_name = {table_name:String}
        AND window_start BETWEEN {from_window:DateTime('UTC')} AND {to_window:DateTime('UTC')}
  )
GROUP BY window_start, load_id
ORDER BY window_start, load_id;
