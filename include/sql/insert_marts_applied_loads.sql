-- Record commits as reflected by the marts (after every mart was swapped). Re-running it
-- for the same load ids only repeats rows of the watermark, which is read as a set.
INSERT INTO {database:Identifier}.marts_applied_loads (load_id, table_name, window_start, applied_at)
SELECT load_id, table_name, window_start, now64(6, 'UTC')
FROM {database:Identifier}.ingest_log
WHERE status IN ('loaded', 'skipped')
  AND has(JSONExtract({load_ids:String}, 'Array(UUID)'), load_id)
LIMIT 1 BY load_id;
