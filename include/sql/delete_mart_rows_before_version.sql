-- Rows of one <mart>_versions table older than a full rebuild that is committed: hidden
-- everywhere since that commit. Run by the refresh after it (see delete_mart_hidden_rows.sql).
-- Parameters: table, version.
DELETE FROM {database:Identifier}.{table:Identifier}
WHERE version < {version:UInt64}
SETTINGS lightweight_delete_mode = 'lightweight_update';
