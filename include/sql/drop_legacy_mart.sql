-- One mart table of the earlier layout (see select_legacy_marts.sql).
DROP TABLE IF EXISTS {database:Identifier}.{table:Identifier};
