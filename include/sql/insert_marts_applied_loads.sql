-- Record commits as reflected by the marts (after their version's commit): those of a
-- refresh's claimed snapshot of the queue, or for a full rebuild every commit of
-- ingest_log ({commits}), under the version that applied them: rows of a version a truncate
-- fenced off do not count. Re-running it only repeats rows of the watermark, a set.
INSERT INTO {database:Identifier}.marts_applied_loads (load_id, table_name, window_start, applied_at, version)
SELECT load_id, table_name, window_start, now64(6, 'UTC'), {version:UInt64}
FROM {database:Identifier}.{commits:Identifier}
WHERE status IN ('loaded', 'skipped')
LIMIT 1 BY load_id;
