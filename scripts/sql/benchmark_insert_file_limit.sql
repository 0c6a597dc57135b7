-- Benchmark only: the engine alone inserting a local JSON Lines file, the fastest any
-- loader could go (no download, no unzip, no validation, no commit).
INSERT INTO {database:Identifier}.{loads_table:Identifier}
SELECT toDateTime('2024-04-11 00:00:00', 'UTC'), generateUUIDv4(), '', '', now64(6), *
FROM file({path:String}, 'JSONEachRow', {structure:String});
