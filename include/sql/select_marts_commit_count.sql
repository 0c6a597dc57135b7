-- How many commits (distinct load ids with status loaded/skipped) ingest_log holds: what a
-- full rebuild reflects.
SELECT uniqExact(load_id)
FROM {database:Identifier}.ingest_log
WHERE status IN ('loaded', 'skipped');
