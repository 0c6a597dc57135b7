-- Rows of the window's superseded loads (a JSON array of load ids, from
-- select_superseded_loads.sql), invisible already: removed to save space.
DELETE FROM {database:Identifier}.{loads_table:Identifier}
WHERE window_start = {window_start:DateTime('UTC')}
  AND has(JSONExtract({load_ids:String}, 'Array(UUID)'), load_id);
