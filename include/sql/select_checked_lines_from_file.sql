-- Lines of one file that pass the input contract (records.ENGINE_SETTINGS come with the
-- statement); the first that does not fails it. Run before insert_loads_from_file.sql when
-- that one reads numbers as written (records.EngineRead), which would take a number in a
-- String field. NOT ignore(*) makes the engine parse every column instead of only
-- counting lines.
SELECT count()
FROM file({path:String}, 'JSONEachRow', {structure:String})
WHERE NOT ignore(*);
