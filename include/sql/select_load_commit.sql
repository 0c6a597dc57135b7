-- Whether the commit row of a load landed (see insert_ingest_log_commit.sql): 1 or 0.
SELECT count()
FROM {database:Identifier}.ingest_log
WHERE table_name = {table_name:String}
  AND window_start = {window_start:DateTime('UTC')}
  AND load_id = {load_id:UUID}
  AND status = 'loaded';
