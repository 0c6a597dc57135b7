-- Lines of one object that pass the input contract, read by the server from the bucket as
-- insert_loads_from_s3.sql reads them (records.ENGINE_SETTINGS come with the statement); the
-- first that does not fails it. Run before that insert when it reads numbers as written
-- (records.EngineRead), which would take a number in a String field. NOT ignore(*) makes
-- the engine parse every column instead of only counting lines.
SELECT count()
FROM s3({url:String}, 'JSONEachRow', {structure:String})
WHERE NOT ignore(*)
SETTINGS use_hive_partitioning = 0;
