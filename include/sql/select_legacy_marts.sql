-- Marts of the earlier layout: plain tables named like the marts' views (a JSON array of
-- names). They are dropped once, and the marts rebuilt in full in the new layout.
SELECT name
FROM system.tables
WHERE database = {database:String}
  AND has(JSONExtract({tables:String}, 'Array(String)'), name)
  AND engine NOT LIKE '%View';
