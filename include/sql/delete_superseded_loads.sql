-- Rows of superseded loads (a JSON array of load ids, from select_superseded_loads.sql) in
-- some windows (a JSON array of UTC hours), invisible already: removed to save space.
DELETE FROM {database:Identifier}.{loads_table:Identifier}
WHERE has(JSONExtract({windows:String}, 'Array(DateTime(\'UTC\'))'), window_start)
  AND has(JSONExtract({load_ids:String}, 'Array(UUID)'), load_id);
