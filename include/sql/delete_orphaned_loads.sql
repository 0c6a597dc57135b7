-- Staged rows of loads no reader will see again (from select_orphaned_loads.sql): their
-- windows and load ids as JSON arrays. Load ids are unique; the windows prune the parts.
DELETE FROM {database:Identifier}.{loads_table:Identifier}
WHERE has(JSONExtract({windows:String}, 'Array(DateTime(\'UTC\'))'), window_start)
  AND has(JSONExtract({load_ids:String}, 'Array(UUID)'), load_id);
