-- Rows of a load that never committed (it failed): invisible already, removed to save space.
DELETE FROM {database:Identifier}.{loads_table:Identifier}
WHERE window_start = {window_start:DateTime('UTC')} AND load_id = {load_id:UUID};
