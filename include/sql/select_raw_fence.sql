-- The newest truncate fence of the raw layer (0: never truncated): a load reads it when it
-- begins and commits only if it is still the newest (insert_ingest_log_commit.sql).
SELECT toString(max(fence)) FROM {database:Identifier}.truncations WHERE scope = 'raw';
