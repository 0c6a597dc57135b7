-- A refresh's working table (its claimed commits, its staged events): dropped by the refresh
-- once done with it, or by a later clean-up when the refresh died (select_marts_working_tables.sql).
DROP TABLE IF EXISTS {database:Identifier}.{table:Identifier};
